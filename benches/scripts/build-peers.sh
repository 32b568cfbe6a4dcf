#!/usr/bin/env bash
# Builds the peer servers weir is compared with, in a scratch folder outside the repository:
# may_minihttp 0.1 and actix-web 4, each serving GET /ping ("pong", text/plain) with one
# worker on 127.0.0.1:$PORT, release profile with fat LTO like weir's. (hyper is in the repo:
# `hyper-ref`.) Needs crates.io.
#
# usage: benches/scripts/build-peers.sh [DIR]   (default /tmp/peers)
#   then: $DIR/may/target/release/may-peer, $DIR/actix/target/release/actix-peer
set -euo pipefail
dir=${1:-/tmp/peers}
mkdir -p "$dir/may/src" "$dir/actix/src"
profile='[profile.release]
codegen-units = 1
lto = "fat"'
cat > "$dir/may/Cargo.toml" <<EOF
[package]
name = "may-peer"
version = "0.1.0"
edition = "2021"
[dependencies]
may_minihttp = "0.1"
may = "0.3"
$profile
EOF
cat > "$dir/may/src/main.rs" <<'EOF'
use may_minihttp::{HttpServer, HttpService, Request, Response};
use std::io;
#[derive(Clone)]
struct Svc;
impl HttpService for Svc {
    fn call(&mut self, req: Request, rsp: &mut Response) -> io::Result<()> {
        match req.path() {
            "/ping" => { rsp.header("Content-Type: text/plain; charset=utf-8"); rsp.body("pong"); }
            _ => { rsp.status_code(404, "Not Found"); }
        }
        Ok(())
    }
}
fn main() {
    let port = std::env::var("PORT").unwrap_or("8080".into());
    may::config().set_workers(1);
    let s = HttpServer(Svc).start(format!("127.0.0.1:{port}")).unwrap();
    s.join().unwrap();
}
EOF
cat > "$dir/actix/Cargo.toml" <<EOF
[package]
name = "actix-peer"
version = "0.1.0"
edition = "2021"
[dependencies]
actix-web = "4"
$profile
EOF
cat > "$dir/actix/src/main.rs" <<'EOF'
use actix_web::{get, App, HttpResponse, HttpServer};
#[get("/ping")]
async fn ping() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; charset=utf-8").body("pong")
}
#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(8080);
    HttpServer::new(|| App::new().service(ping)).workers(1).bind(("127.0.0.1", port))?.run().await
}
EOF
(cd "$dir/may" && cargo build --release)
(cd "$dir/actix" && cargo build --release)
echo "built: $dir/may/target/release/may-peer $dir/actix/target/release/actix-peer"
