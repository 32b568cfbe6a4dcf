//! The hyper 1.x reference server for comparisons: `/ping` and `/api/v1/compute/fast` with the
//! same responses as weir (no rate limiter, metrics or request IDs: the minimum hyper needs).
//! `SERVER_PORT` (or `--port`) like weir; `HYPER_FLAVOR=current|multi` picks the tokio layout.

// `unsafe` only where allowed by name (docs/architecture.md, "Where `unsafe` is").
#![deny(unsafe_code)]

use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[derive(serde::Deserialize)]
struct Compute {
    number: i64,
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, ct: &'static str, body: Bytes| {
        Response::builder()
            .status(status)
            .header("content-type", ct)
            .body(Full::new(body))
            .expect("valid response")
    };
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/ping") => reply(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"pong"),
        ),
        (&Method::POST, "/api/v1/compute/fast") => {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            match serde_json::from_slice::<Compute>(&body) {
                Ok(c) if c.number.unsigned_abs() <= 3_037_000_499 => {
                    let out = format!(
                        "{{\"request_id\":\"-\",\"job_id\":0,\"result\":{},\"latency_us\":0,\"timestamp\":0}}",
                        c.number * c.number
                    );
                    reply(StatusCode::OK, "application/json", Bytes::from(out))
                }
                _ => reply(
                    StatusCode::BAD_REQUEST,
                    "application/json",
                    Bytes::from_static(b"{\"code\":\"INVALID_REQUEST\"}"),
                ),
            }
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "application/json",
            Bytes::from_static(b"{\"code\":\"NOT_FOUND\"}"),
        ),
    })
}

/// The hyper reference server: hyper 1.x on tokio answering weir's /ping and
/// /api/v1/compute/fast the same way, for side-by-side benchmarks.
#[derive(clap::Parser, Debug)]
#[command(
    name = "hyper-ref",
    version,
    about = "hyper-ref: hyper 1.x on tokio answering /ping and /api/v1/compute/fast as weir does, the reference of the benchmarks"
)]
struct Cli {
    /// Listen address: 8080, :8080, 127.0.0.1:8080, [::1]:8080 (port 0 picks a free port).
    #[arg(long, env = "SERVER_PORT", default_value = "127.0.0.1:8080")]
    port: String,
    /// tokio's layout: `current` (one thread, as the benches run it) or `multi`.
    #[arg(long, env = "HYPER_FLAVOR", default_value = "current", value_parser = ["current", "multi"])]
    flavor: String,
}

fn main() {
    let cli = <Cli as clap::Parser>::parse();
    let port = cli.port.trim();
    let addr: Option<SocketAddr> = port.parse().ok().or_else(|| {
        let bare = port.trim_start_matches(':');
        bare.parse::<u16>()
            .ok()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
    });
    let Some(addr) = addr else {
        eprintln!(
            "hyper-ref: invalid --port / SERVER_PORT {port:?}: expected 8080, :8080, 127.0.0.1:8080 or [::1]:8080"
        );
        std::process::exit(2);
    };
    let multi = cli.flavor == "multi";
    let rt = if multi {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
    .expect("tokio runtime");
    rt.block_on(async move {
        let listener = match TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("hyper-ref: cannot bind {addr}: {e}");
                std::process::exit(1);
            }
        };
        println!("listening on {}", listener.local_addr().expect("local addr"));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal");
        loop {
            tokio::select! {
                r = listener.accept() => {
                    let Ok((stream, _)) = r else { continue };
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(async move {
                        let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service_fn(handle)).await;
                    });
                }
                _ = term.recv() => break,
            }
        }
    });
}
