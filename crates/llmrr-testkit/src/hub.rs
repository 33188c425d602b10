//! A mock Hugging Face-compatible hub over real HTTP: `GET /{owner}/{repo}/resolve/{rev}/{path}`
//! with Range requests and the SHA-256 in `X-Linked-Etag`, as the real hub serves LFS files.
//! A file can be set to cut the connection once after N bytes, to test resuming.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
struct HubFile {
    data: Bytes,
    sha256: String,
    /// Announce this checksum instead (a corrupt upload).
    announce: Option<String>,
    /// Cut the next full download after this many bytes (once).
    cut_after: Option<usize>,
}

#[derive(Clone, Default)]
pub struct MockHub {
    pub base_url: String,
    files: Arc<Mutex<HashMap<String, HubFile>>>,
    /// Every request's `Range` header (None: a full download).
    pub ranges: Arc<Mutex<Vec<Option<String>>>>,
}

impl MockHub {
    pub async fn start() -> MockHub {
        let mut hub = MockHub::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        hub.base_url = format!("http://{}", listener.local_addr().expect("addr"));
        let app = Router::new()
            .route("/{owner}/{repo}/resolve/{rev}/{*path}", get(serve))
            .route("/api/models/{owner}/{repo}/tree/{rev}", get(tree))
            .with_state(hub.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        hub
    }

    /// Publishes `data` as `owner/repo/path` at revision `main`.
    pub fn publish(&self, repo_path: &str, data: Vec<u8>, cut_after: Option<usize>, corrupt: bool) {
        let sha256 = hex::encode(Sha256::digest(&data));
        let announce = corrupt.then(|| "0".repeat(64));
        self.files.lock().expect("lock").insert(
            repo_path.to_owned(),
            HubFile {
                data: data.into(),
                sha256,
                announce,
                cut_after,
            },
        );
    }
}

/// The hub's file list of a repository (`/api/models/{owner}/{repo}/tree/{rev}`): each file
/// with its size, LFS files with `lfs.size` as the real hub gives them.
async fn tree(
    State(hub): State<MockHub>,
    Path((owner, repo, rev)): Path<(String, String, String)>,
) -> Response {
    if rev != "main" {
        return (StatusCode::NOT_FOUND, "Revision not found").into_response();
    }
    let prefix = format!("{owner}/{repo}/");
    let files = hub.files.lock().expect("lock");
    let mut list: Vec<serde_json::Value> = files
        .iter()
        .filter_map(|(k, f)| {
            let path = k.strip_prefix(&prefix)?;
            Some(
                serde_json::json!({"type": "file", "path": path, "size": f.data.len(),
                "lfs": {"size": f.data.len(), "oid": f.sha256}}),
            )
        })
        .collect();
    list.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    axum::Json(list).into_response()
}

async fn serve(
    State(hub): State<MockHub>,
    Path((owner, repo, rev, path)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let key = format!("{owner}/{repo}/{path}");
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    hub.ranges.lock().expect("lock").push(range.clone());
    let file = {
        let mut files = hub.files.lock().expect("lock");
        let Some(f) = files.get_mut(&key).filter(|_| rev == "main") else {
            return (StatusCode::NOT_FOUND, "Entry not found").into_response();
        };
        let snapshot = f.clone();
        f.cut_after = None;
        snapshot
    };
    let etag = format!("\"{}\"", file.announce.as_deref().unwrap_or(&file.sha256));
    let len = file.data.len();
    // `bytes=a-b`: a slice of the file (a header read).
    let slice = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
    if let Some((a, b)) = slice.filter(|(a, b)| a < b && *a < len) {
        let end = b.min(len - 1);
        return Response::builder()
            .status(StatusCode::PARTIAL_CONTENT)
            .header("x-linked-etag", etag)
            .header(header::CONTENT_LENGTH, end + 1 - a)
            .header(header::CONTENT_RANGE, format!("bytes {a}-{end}/{len}"))
            .body(Body::from(file.data.slice(a..=end)))
            .expect("response");
    }
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    match start {
        Some(s) if s >= len => Response::builder()
            .status(StatusCode::RANGE_NOT_SATISFIABLE)
            .header("x-linked-etag", etag)
            .body(Body::empty())
            .expect("response"),
        Some(s) => Response::builder()
            .status(StatusCode::PARTIAL_CONTENT)
            .header("x-linked-etag", etag)
            .header(header::CONTENT_LENGTH, len - s)
            .header(
                header::CONTENT_RANGE,
                format!("bytes {s}-{}/{len}", len - 1),
            )
            .body(Body::from(file.data.slice(s..)))
            .expect("response"),
        None => {
            let body = match file.cut_after {
                // Announce the whole length, send part, then end the connection: a cut download.
                Some(n) => {
                    // The error comes a moment later, so the headers and the part are sent
                    // before the connection is dropped.
                    let part = file.data.slice(..n);
                    let stream = futures_util::stream::unfold(0, move |step| {
                        let part = part.clone();
                        async move {
                            match step {
                                0 => Some((Ok::<Bytes, std::io::Error>(part), 1)),
                                1 => {
                                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                                    Some((Err(std::io::Error::other("cut")), 2))
                                }
                                _ => None,
                            }
                        }
                    });
                    Body::from_stream(stream)
                }
                None => Body::from(file.data.clone()),
            };
            Response::builder()
                .status(StatusCode::OK)
                .header("x-linked-etag", etag)
                .header(header::CONTENT_LENGTH, len)
                .body(body)
                .expect("response")
        }
    }
}
