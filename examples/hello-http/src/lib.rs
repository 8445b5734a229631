//! A wasi:http handler: Strata serves each request with a fresh instance of it.
//! `GET /anything` answers with a greeting that names the path, the `GREETING`
//! environment variable and a file of the image (`/greeting.txt`), when there is one.

use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Hello;

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_else(|| "/".into());
        let greeting = std::env::var("GREETING").unwrap_or_else(|_| "Hello".into());
        let mut text = format!("{greeting} from a Wasm HTTP handler: {path}\n");
        if let Ok(file) = std::fs::read_to_string("/greeting.txt") {
            text.push_str(&file);
        }
        let headers = Fields::from_list(&[(
            "content-type".to_string(),
            b"text/plain; charset=utf-8".to_vec(),
        )])
        .expect("valid headers");
        let response = OutgoingResponse::new(headers);
        let body = response.body().expect("the body, once");
        ResponseOutparam::set(out, Ok(response));
        let stream = body.write().expect("the body's stream, once");
        stream
            .blocking_write_and_flush(text.as_bytes())
            .expect("write the body");
        drop(stream);
        OutgoingBody::finish(body, None).expect("finish the body");
    }
}

wasip2::http::proxy::export!(Hello);
