//! The HTTP side of `wanalyze view`: a `tiny_http` server on 127.0.0.1,
//! every route under `/<token>/`.
//!
//! The URL that opens the profile is samply's form:
//! `https://profiler.firefox.com/from-url/<profile URL>/?symbolServer=<base URL>`,
//! both URLs percent-encoded, the base URL being `http://127.0.0.1:PORT/<token>`.
//! The profiler fetches from another origin, so every answer carries
//! `Access-Control-Allow-Origin: *` and preflight requests (`OPTIONS`) are
//! answered as samply does; the token is what keeps other pages out.

use std::io::Read;

use serde_json::json;
use tiny_http::{Header, Method, Request, Response};

use super::asm::disassemble;
use super::Served;

/// The largest request body read (the symbol-server requests are small).
const MAX_BODY: u64 = 64 << 10;

/// A bound server and what it serves.
pub struct Server {
    http: tiny_http::Server,
    port: u16,
    token: String,
    served: Served,
}

impl Server {
    /// Binds 127.0.0.1:`port` (0: a free port) with a fresh random token.
    pub fn bind(port: u16, served: Served) -> anyhow::Result<Server> {
        let http = tiny_http::Server::http(("127.0.0.1", port))
            .map_err(|e| anyhow::anyhow!("cannot listen on 127.0.0.1:{port}: {e}"))?;
        let port = http
            .server_addr()
            .to_ip()
            .map(|a| a.port())
            .ok_or_else(|| anyhow::anyhow!("not listening on an IP address"))?;
        Ok(Server {
            http,
            port,
            token: token()?,
            served,
        })
    }

    /// `http://127.0.0.1:PORT/<token>`: the symbol server's URL.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/{}", self.port, self.token)
    }

    /// The URL that opens the profile in the Firefox Profiler.
    pub fn profiler_url(&self) -> String {
        profiler_url(&self.base_url())
    }

    /// Answers requests until the process is stopped.
    pub fn serve(&self) {
        for req in self.http.incoming_requests() {
            // A client that went away is no reason to stop.
            let _ = self.answer(req);
        }
    }

    fn answer(&self, mut req: Request) -> std::io::Result<()> {
        let prefix = format!("/{}/", self.token);
        let path = req.url().split('?').next().unwrap_or("").to_owned();
        let method = req.method().clone();
        if method == Method::Options {
            // CORS preflight: anything this server answers may be asked.
            let mut r = Response::empty(204)
                .with_header(header("Access-Control-Allow-Methods", "POST, GET, OPTIONS"))
                .with_header(header("Access-Control-Max-Age", "86400"))
                .with_header(cors());
            let asked = req
                .headers()
                .iter()
                .find(|h| h.field.equiv("Access-Control-Request-Headers"))
                .map(|h| h.value.as_str().to_owned());
            if let Some(asked) = asked {
                r = r.with_header(header("Access-Control-Allow-Headers", &asked));
            }
            return req.respond(r);
        }
        let Some(route) = path.strip_prefix(&prefix) else {
            return req.respond(not_found("not found"));
        };
        let route = route.to_owned();
        let response = match (&method, route.as_str()) {
            (Method::Get, "profile.json") => Response::from_data(self.served.profile.clone())
                .with_header(header("Content-Type", "application/json; charset=UTF-8")),
            (Method::Post, "source/v1") => match body(&mut req) {
                Some(b) => self.source(&b),
                None => not_found("bad request body"),
            },
            (Method::Post, "asm/v1") => match body(&mut req) {
                Some(b) => self.asm(&b),
                None => not_found("bad request body"),
            },
            _ => not_found("not found"),
        };
        req.respond(response.with_header(cors()))
    }

    /// `/source/v1`: `{debugName, debugId, moduleOffset, file}` → the
    /// file's text, if the profile names the file.
    fn source(&self, req: &serde_json::Value) -> Response<std::io::Cursor<Vec<u8>>> {
        let Some(file) = req["file"].as_str() else {
            return not_found("no file in the request");
        };
        match self.served.source(file) {
            Some(text) => json_response(&json!({
                "symbolsLastModified": null,
                "sourceLastModified": null,
                "file": file,
                "source": text,
            })),
            None => not_found(&format!(
                "{file}: not a source file of this profile, or not found"
            )),
        }
    }

    /// `/asm/v1`: `{debugName, debugId, startAddress, size, ...}` → the wasm
    /// instructions of the function at `startAddress`, a whole-file offset.
    fn asm(&self, req: &serde_json::Value) -> Response<std::io::Cursor<Vec<u8>>> {
        let (Some(name), Some(id)) = (req["debugName"].as_str(), req["debugId"].as_str()) else {
            return not_found("no debugName or debugId in the request");
        };
        let Some(lib) = self.served.lib(name, id) else {
            return not_found(&format!("{name} {id}: not a module of this profile"));
        };
        let Some(start) = req["startAddress"].as_str().and_then(parse_hex) else {
            return not_found("no startAddress in the request");
        };
        match disassemble(&lib.symbols, start) {
            Some(d) => json_response(&json!({
                "startAddress": format!("{:#x}", d.start),
                "size": format!("{:#x}", d.size),
                "arch": "wasm32",
                "syntax": ["WebAssembly text"],
                "instructions": d.instructions.iter().map(|(o, t)| json!([o, t])).collect::<Vec<_>>(),
            })),
            None => not_found(&format!("{start:#x}: not inside a function body of {name}")),
        }
    }
}

/// The profiler URL for a symbol server at `base` serving `base/profile.json`.
pub fn profiler_url(base: &str) -> String {
    format!(
        "https://profiler.firefox.com/from-url/{}/?symbolServer={}",
        percent_encode(&format!("{base}/profile.json")),
        percent_encode(base)
    )
}

/// Percent-encodes everything but `A-Z a-z 0-9 - . _ ~` (as
/// `encodeURIComponent` and more).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn parse_hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.strip_prefix("0x").unwrap_or(s), 16).ok()
}

/// 128 random bits from the kernel, in hex.
fn token() -> anyhow::Result<String> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| anyhow::anyhow!("/dev/urandom: {e}"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// The request's JSON body, at most [`MAX_BODY`] bytes.
fn body(req: &mut Request) -> Option<serde_json::Value> {
    let mut b = Vec::new();
    req.as_reader().take(MAX_BODY).read_to_end(&mut b).ok()?;
    serde_json::from_slice(&b).ok()
}

fn header(k: &str, v: &str) -> Header {
    Header::from_bytes(k.as_bytes(), v.as_bytes()).expect("a valid header")
}

fn cors() -> Header {
    header("Access-Control-Allow-Origin", "*")
}

fn json_response(v: &serde_json::Value) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_data(v.to_string().into_bytes())
        .with_header(header("Content-Type", "application/json"))
}

fn not_found(why: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    json_response(&json!({ "error": why })).with_status_code(404)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profiler_url_has_both_urls_encoded() {
        assert_eq!(
            percent_encode("http://a:1/x-y_z.~"),
            "http%3A%2F%2Fa%3A1%2Fx-y_z.~"
        );
        assert_eq!(
            profiler_url("http://127.0.0.1:8/t"),
            "https://profiler.firefox.com/from-url/http%3A%2F%2F127.0.0.1%3A8%2Ft%2Fprofile.json/?symbolServer=http%3A%2F%2F127.0.0.1%3A8%2Ft"
        );
        assert_eq!(parse_hex("0x1a"), Some(26));
        assert_eq!(token().unwrap().len(), 32);
    }
}
