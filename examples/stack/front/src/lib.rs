//! The example stack's front end, a wasi:http handler served by Strata with an instance per
//! request. It asks the backend service (`BACKEND`, an authority such as `backend:8080`,
//! reached by its service name on the stack's network) for `/cgi-bin/visit` and answers
//! with what it said, or with 502 and why when it could not.

use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};

struct Front;

/// GET `http://{authority}{path}`: the status and the body.
fn fetch(authority: &str, path: &str) -> Result<(u16, Vec<u8>), String> {
    let request = OutgoingRequest::new(Fields::new());
    request.set_method(&Method::Get).map_err(|()| "method")?;
    request.set_scheme(Some(&Scheme::Http)).map_err(|()| "scheme")?;
    request
        .set_authority(Some(authority))
        .map_err(|()| format!("authority {authority:?}"))?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| "path")?;
    let pending =
        wasip2::http::outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or("no response")?
        .map_err(|()| "response taken")?
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let body = response.consume().map_err(|()| "body")?;
    let stream = body.stream().map_err(|()| "body stream")?;
    let mut all = Vec::new();
    while let Ok(chunk) = stream.blocking_read(65536) {
        all.extend(chunk);
    }
    Ok((status, all))
}

fn answer(out: ResponseOutparam, status: u16, text: &str) {
    let headers = Fields::from_list(&[(
        "content-type".to_string(),
        b"text/plain; charset=utf-8".to_vec(),
    )])
    .expect("valid headers");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("a valid status");
    let body = response.body().expect("the body, once");
    ResponseOutparam::set(out, Ok(response));
    let stream = body.write().expect("the body's stream, once");
    stream
        .blocking_write_and_flush(text.as_bytes())
        .expect("write the body");
    drop(stream);
    OutgoingBody::finish(body, None).expect("finish the body");
}

impl wasip2::exports::http::incoming_handler::Guest for Front {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let backend = std::env::var("BACKEND").unwrap_or_else(|_| "backend:8080".into());
        match fetch(&backend, "/cgi-bin/visit") {
            Ok((200, body)) => answer(
                out,
                200,
                &format!(
                    "front (wasm) -> {backend} (native): {}",
                    String::from_utf8_lossy(&body)
                ),
            ),
            Ok((status, _)) => answer(out, 502, &format!("{backend} answered {status}\n")),
            Err(e) => answer(out, 502, &format!("{backend} unreachable: {e}\n")),
        }
    }
}

wasip2::http::proxy::export!(Front);
