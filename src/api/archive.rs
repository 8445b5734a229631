//! `docker cp` through the API: `HEAD`/`GET /containers/{id}/archive` (a path's stat, and
//! its tar) and `PUT` (a tar extracted into a directory), on the root `strata cp` uses.

use hyper::{Response, StatusCode};
use serde_json::json;
use strata_runtime::container::Containers;
use strata_runtime::Store;

use super::containers::get;
use super::stream::Body;
use super::{empty_reply, ApiError, Call, Reply};

/// docker's `X-Docker-Container-Path-Stat`: the path's name, size, Go file mode, mtime and
/// link target, as base64 of JSON.
fn path_stat(
    root: &strata_runtime::fs::Overlay<strata_runtime::cap_std::fs::Dir>,
    path: &str,
) -> Result<String, ApiError> {
    use base64::Engine;
    let (st, _) = root
        .stat_resolved(std::ffi::OsStr::new(path), false)
        .map_err(|_| ApiError::not_found(format!("Could not find the file {path} in container")))?;
    let kind = st.st_mode & libc_mode::S_IFMT;
    let mut mode = st.st_mode & 0o777;
    // Go's os.FileMode type bits.
    if kind == libc_mode::S_IFDIR {
        mode |= 1 << 31;
    } else if kind == libc_mode::S_IFLNK {
        mode |= 1 << 27;
    }
    let link = if kind == libc_mode::S_IFLNK {
        root.read_link(std::ffi::OsStr::new(path))
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        String::new()
    };
    let name =
        String::from_utf8_lossy(&crate::cli::cp::top_name(path.as_bytes()).into_encoded_bytes())
            .into_owned();
    let mtime = chrono::DateTime::from_timestamp(st.st_mtime, 0).unwrap_or_default();
    let doc = json!({
        "name": if name == "." { "/".to_string() } else { name },
        "size": st.st_size,
        "mode": mode,
        "mtime": mtime.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "linkTarget": link,
    });
    Ok(base64::engine::general_purpose::STANDARD.encode(doc.to_string()))
}

/// The `path` parameter both directions take.
fn path_param(call: &Call) -> Result<String, ApiError> {
    call.param("path")
        .filter(|p| !p.is_empty())
        .map(String::from)
        .ok_or_else(|| ApiError::bad("path is required"))
}

/// The file-type bits of `st_mode`.
mod libc_mode {
    pub const S_IFMT: u32 = 0o170000;
    pub const S_IFDIR: u32 = 0o040000;
    pub const S_IFLNK: u32 = 0o120000;
}

/// `HEAD`/`GET /containers/{id}/archive?path=…` (`docker cp` out): the path's stat, and
/// for GET a tar of it whose top entry is its base name, from the root `cp` uses.
pub fn archive(store: &Store, key: &str, call: &Call, head: bool) -> Reply {
    let containers = Containers::open(store)?;
    let c = get(&containers, key)?;
    let path = path_param(call)?;
    let root = containers.copy_root(&c)?;
    let stat = path_stat(&root.overlay, &path)?;
    let response = Response::builder()
        .status(StatusCode::OK)
        .header("X-Docker-Container-Path-Stat", stat)
        .header("Content-Type", "application/x-tar");
    if head {
        return Ok(response.body(Body::full(Vec::new())).expect("a response"));
    }
    let (sender, body) = Body::channel();
    std::thread::spawn(move || {
        // `root` (and the claim it holds on a stopped container) lives as long as this.
        let top = crate::cli::cp::top_name(path.as_bytes());
        let mut out = super::stream::Writer(sender);
        let _ = strata_runtime::container::copy::archive(
            &root.overlay,
            std::ffi::OsStr::new(&path),
            false,
            &top,
            &mut out,
        );
    });
    Ok(response.body(body).expect("a response"))
}

/// `PUT /containers/{id}/archive?path=DIR` (`docker cp` in): the tar body extracted into
/// the directory, as `cp`'s `extract` does it (nothing outside it, owners root's unless
/// `copyUIDGID`).
pub fn extract(store: &Store, key: &str, call: Call) -> Reply {
    let containers = Containers::open(store)?;
    let c = get(&containers, key)?;
    let path = path_param(&call)?;
    let owner = if call.flag("copyUIDGID") {
        strata_runtime::container::copy::Owner::FromArchive
    } else {
        strata_runtime::container::copy::Owner::Root
    };
    let root = containers.copy_root(&c)?;
    let dir = match strata_runtime::container::copy::resolve(
        &root.overlay,
        std::ffi::OsStr::new(&path),
        true,
    )? {
        Some((true, dir)) => dir,
        Some((false, _)) => {
            return Err(ApiError::bad(format!(
                "extraction point is not a directory: {path}"
            )))
        }
        None => {
            return Err(ApiError::not_found(format!(
                "Could not find the file {path} in container"
            )))
        }
    };
    let input = call
        .stream
        .ok_or_else(|| ApiError::bad("no archive in the request"))?;
    strata_runtime::container::copy::extract(&root.overlay, &dir, input, owner)?;
    empty_reply(StatusCode::OK)
}
