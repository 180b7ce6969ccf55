//! `wrec serve`: a `wasi:http/proxy` component served over HTTP/1.1 the way
//! `wasmtime serve` serves it, with every thread that runs guest code
//! sampled.
//!
//! - As `wasmtime serve`: a multi-threaded Tokio runtime with Tokio's
//!   default number of worker threads (one per CPU), time and I/O enabled;
//!   a listener bound to `--addr` (`SO_REUSEADDR` on, as Wasmtime sets it on
//!   Unix); `Serving HTTP on http://ADDR/` on stderr once it listens; each
//!   connection served by hyper's HTTP/1.1 server with keep-alive and
//!   `TCP_NODELAY`; each request in a fresh [`Store`] of a component
//!   pre-instantiated once ([`ProxyPre`]), its `handle` call run in a task
//!   of its own, so that the guest may go on writing the body after it
//!   set the response; a request that fails gets Wasmtime's 500 page.
//!   The guest gets the `wasi:http/proxy` world's interfaces (no
//!   `wasi:cli` beyond them), the `--env` variables, the `--dir`
//!   directories and wrec's stdout and stderr (without Wasmtime's
//!   `stdout [N] ::` prefixes).
//! - Not as `wasmtime serve`: **outgoing requests** (`wasi:http/outgoing-handler`)
//!   are answered with `HTTP-request-denied`: wrec is built without a TLS
//!   stack. A stop signal drains the server instead of leaving keep-alive
//!   connections hanging: see below.
//! - **Sampling**: the guest runs on Wasmtime fibers polled by the runtime's
//!   worker threads, and a request's task may move from one worker to
//!   another between polls. So every poll of a request's task first makes
//!   sure the thread polling it has a sampler (a thread-local one, created
//!   at its first request, named `worker N` in the order the workers
//!   first ran a request), and the runtime's `on_thread_stop` ends it. Each
//!   worker thus has its own timer, and the trace one thread per worker
//!   that served requests; the fibers' stacks come from
//!   [`crate::FiberStackCreator`] (set up by [`crate::configure`]), so
//!   samples on them are whole. Between its polls of requests' tasks a
//!   worker is idle ([`crate::ThreadSampler::set_idle`]): it takes no
//!   samples and its CPU time there is not recorded, so the trace holds
//!   the requests' time, not the waiting or hyper's connection work; a
//!   worker idle a while has its timer stopped until its next poll. The
//!   component's core modules are recorded once, before the first
//!   request.
//! - **Requests**: when a request's handler returns, the worker that ran
//!   it last writes its request record (SPEC.md §2.8: its index, method,
//!   path and span; see `OnSampledThread`), which the analyzer makes a
//!   marker on that thread, so every sample is attributed to its request.
//! - **Stopping**: the first SIGINT, SIGTERM or SIGHUP stops accepting
//!   connections, closes idle keep-alive connections, lets the requests in
//!   progress finish, ends the samplers and the trace (an `Exited 0` end
//!   record), prints the summary and exits 0 (as `wasmtime serve` exits
//!   0 on Ctrl-C). A second one ends the trace at once, as `wrec run`
//!   does on a signal, and exits with 128 + its number.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::server::conn::http1;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::{one_line, wasi_context, RunError, RunOptions, UnknownImports};
use crate::{ExitInfo, ExitKind, Recorder, RecorderOptions, Sampling, Summary, STOP_SIGNALS};

/// Wasmtime's `serve` address: every interface, port 8080.
pub const DEFAULT_ADDR: &str = "0.0.0.0:8080";

/// Everything [`serve`] needs: the run's options (its `args` and
/// `call_hook` are not used) and the address to listen on.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub run: RunOptions,
    pub addr: SocketAddr,
}

/// How serving ended.
#[derive(Debug)]
pub struct ServeOutcome {
    /// 0 after a stop signal drained the server (as `wasmtime serve`), 1
    /// if serving failed (the listener broke).
    pub exit_code: i32,
    /// What failed, to print as is.
    pub error: Option<String>,
    /// Requests received.
    pub requests: u64,
    /// The finished trace, or why finishing it failed.
    pub summary: Result<Summary, crate::Error>,
}

/// The store's data for one request.
struct Host {
    ctx: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: DenyOutgoing,
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// `wasi:http`'s defaults, but outgoing requests are denied (wrec has no
/// TLS stack to send them with).
struct DenyOutgoing;

type SendFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                hyper::Response<wasmtime_wasi_http::WasiBody>,
                Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for DenyOutgoing {
    fn send_request(
        &mut self,
        _request: hyper::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendFuture {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

/// What every request shares.
struct Server {
    recorder: Arc<Recorder>,
    pre: ProxyPre<Host>,
    opts: RunOptions,
    argv: Vec<String>,
    /// The next request's index (from 0, in the order requests arrive).
    next_request: AtomicU64,
    /// The next worker's number.
    next_worker: AtomicU32,
    /// Whether a sampler failed to start (warned once).
    sampler_failed: AtomicBool,
    /// Guest tasks still running (they may outlive their connection's
    /// response), and a wake-up for when they reach 0.
    in_flight: Mutex<u64>,
    idle: tokio::sync::Notify,
}

/// A worker's sampler: none yet, running, or failed to start.
enum WorkerSampler {
    None,
    Running(Sampling),
    Failed,
}

thread_local! {
    static SAMPLER: RefCell<WorkerSampler> = const { RefCell::new(WorkerSampler::None) };
}

/// The calling worker has finished polling guest code: it is idle (not
/// sampled, its CPU time not counted) until its next [`Server::begin_poll`].
fn end_poll() {
    SAMPLER.with(|s| {
        if let WorkerSampler::Running(sampling) = &*s.borrow() {
            sampling.set_idle(true);
        }
    });
}

impl Server {
    /// Makes sure the calling thread (a worker about to poll guest code)
    /// is sampled, and busy until [`end_poll`]; returns its thread id in
    /// the trace.
    fn begin_poll(&self) -> Option<u32> {
        SAMPLER.with(|s| {
            let mut s = s.borrow_mut();
            if let WorkerSampler::None = *s {
                let n = self.next_worker.fetch_add(1, Ordering::Relaxed);
                let started = self
                    .recorder
                    .thread_sampler(&format!("worker {n}"))
                    .map_err(|e| e.to_string())
                    .and_then(|t| t.start().map_err(|e| e.to_string()));
                *s = match started {
                    Ok(sampling) => WorkerSampler::Running(sampling),
                    Err(e) => {
                        if !self.sampler_failed.swap(true, Ordering::Relaxed) {
                            eprintln!("wrec: warning: a worker thread is not sampled: {e}");
                        }
                        WorkerSampler::Failed
                    }
                };
            }
            match &*s {
                WorkerSampler::Running(sampling) => {
                    sampling.set_idle(false);
                    Some(sampling.thread_id())
                }
                _ => None,
            }
        })
    }

    /// A fresh store for one request, as `wasmtime serve` makes one.
    fn new_store(&self) -> Result<Store<Host>, RunError> {
        let mut wasi = wasi_context(&self.opts, &self.argv)?;
        // The worker threads are the server's: a WASI call that waits
        // yields to the runtime instead of blocking one.
        wasi.allow_blocking_current_thread(false);
        Ok(Store::new(
            self.pre.engine(),
            Host {
                ctx: wasi.build(),
                http: WasiHttpCtx::new(),
                table: ResourceTable::new(),
                hooks: DenyOutgoing,
            },
        ))
    }

    /// One guest task has ended.
    fn task_done(&self) {
        let mut n = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        *n -= 1;
        if *n == 0 {
            self.idle.notify_waiters();
        }
    }

    /// Waits until no guest task is running.
    async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if *self.in_flight.lock().unwrap_or_else(|e| e.into_inner()) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// What a request record says about a request, besides its thread and
/// end.
struct RequestInfo {
    index: u64,
    method: String,
    path: String,
}

/// A request's guest task: every poll runs on a sampled thread, and when
/// the guest's handler has returned (its store dropped), the request's
/// record is written, on the thread that ran it last, from the task's
/// first poll (when a worker began making its instance: the time it
/// waited for a worker before is not the guest's) to its end. A request
/// that runs without waiting is thus one span of one thread's time, which
/// no other request's overlaps; one that waits in a host call lets the
/// worker run others meanwhile, inside its span.
struct OnSampledThread<F> {
    inner: Pin<Box<F>>,
    server: Arc<Server>,
    request: RequestInfo,
    start_ns: Option<u64>,
    last_thread: Option<u32>,
}

impl<F: Future> Future for OnSampledThread<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // The span starts before the worker is busy and ends after it is
        // idle again, so every sample of the poll lies inside it.
        if self.start_ns.is_none() {
            self.start_ns = Some(wrec_format::clock_ns(libc::CLOCK_MONOTONIC));
        }
        let thread = self.server.begin_poll();
        self.last_thread = thread;
        let poll = self.inner.as_mut().poll(cx);
        end_poll();
        let Poll::Ready(out) = poll else {
            return Poll::Pending;
        };
        let end_ns = wrec_format::clock_ns(libc::CLOCK_MONOTONIC);
        if let Some(thread) = self.last_thread {
            let r = &self.request;
            let start_ns = self.start_ns.unwrap_or(end_ns);
            // A full trace drops it, as it drops samples.
            let _ = self
                .server
                .recorder
                .record_request(thread, start_ns, end_ns, r.index, &r.method, &r.path);
        }
        self.server.task_done();
        Poll::Ready(out)
    }
}

type Response = hyper::Response<HyperOutgoingBody>;

/// Handles one request: a fresh store, the guest's `handle` in a task of
/// its own, the response it sets.
async fn handle(
    server: Arc<Server>,
    req: hyper::Request<hyper::body::Incoming>,
) -> wasmtime::Result<Response> {
    let request = RequestInfo {
        index: server.next_request.fetch_add(1, Ordering::Relaxed),
        // Cut to the record's bounds by `Recorder::record_request`.
        method: req.method().as_str().to_owned(),
        path: req
            .uri()
            .path_and_query()
            .map_or(req.uri().path(), |p| p.as_str())
            .to_owned(),
    };
    let mut store = server.new_store().map_err(|e| wasmtime::Error::msg(e.0))?;
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let req = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, req)?;
    let out = store.data_mut().http().new_response_outparam(sender)?;
    let pre = server.pre.clone();
    *server.in_flight.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    let task = tokio::task::spawn(OnSampledThread {
        server: server.clone(),
        request,
        start_ns: None,
        last_thread: None,
        inner: Box::pin(async move {
            let result = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
            }
            .await;
            // The store (and the guest's files) go before the request
            // ends.
            drop(store);
            result
        }),
    });
    match receiver.await {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) => Err(e.into()),
        // The guest returned (or failed) without setting a response.
        Err(_) => {
            let e = match task.await {
                Ok(Ok(())) => {
                    wasmtime::Error::msg("guest never invoked `response-outparam::set` method")
                }
                Ok(Err(e)) => e,
                Err(e) => e.into(),
            };
            Err(e.context("guest never invoked `response-outparam::set` method"))
        }
    }
}

/// Wasmtime's answer to a request that failed.
fn internal_error() -> Response {
    const PAGE: &str = "\
<!doctype html>
<html>
<head>
    <title>500 Internal Server Error</title>
</head>
<body>
    <center>
        <h1>500 Internal Server Error</h1>
        <hr>
        wasmtime
    </center>
</body>
</html>";
    hyper::Response::builder()
        .status(hyper::StatusCode::INTERNAL_SERVER_ERROR)
        .header("Content-Type", "text/html; charset=UTF-8")
        .body(
            http_body_util::Full::new(bytes::Bytes::from_static(PAGE.as_bytes()))
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .expect("a valid response")
}

/// Serves one connection until it closes, or until `stop` (then it
/// finishes the request in progress and closes).
async fn serve_connection(
    server: Arc<Server>,
    stream: tokio::net::TcpStream,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |req| {
        let server = server.clone();
        async move {
            match handle(server, req).await {
                Ok(r) => Ok::<_, Infallible>(r),
                Err(e) => {
                    eprintln!("error: {e:?}");
                    Ok(internal_error())
                }
            }
        }
    });
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(wasmtime_wasi_http::io::TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e:?}");
    }
}

/// The accept loop, until `stop`; then waits for the connections and the
/// guest tasks still running.
async fn accept_loop(
    server: Arc<Server>,
    listener: std::net::TcpListener,
    stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let mut connections = tokio::task::JoinSet::new();
    let mut stopping = stop.clone();
    let result = loop {
        let accepted = tokio::select! {
            _ = stopped(&mut stopping) => break Ok(()),
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            // A connection that failed before it was accepted (reset,
            // too many open files for now): the server goes on.
            Err(e) if is_transient(&e) => {
                eprintln!("wrec: warning: accepting a connection: {e}");
                continue;
            }
            Err(e) => break Err(e),
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(serve_connection(server.clone(), stream, stop.clone()));
    };
    drop(listener);
    while connections.join_next().await.is_some() {}
    server.wait_idle().await;
    result
}

/// Returns once the server is told to stop.
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    // An error: the sender is gone, which only happens at the end.
    let _ = stop.wait_for(|s| *s).await;
}

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    ) || matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Compiles the component, listens on `opts.addr`, starts the recording
/// and serves until a stop signal.
pub fn serve(opts: &ServeOptions) -> Result<ServeOutcome, RunError> {
    let run = &opts.run;
    let wasm_name = run.wasm.display().to_string();
    let bytes =
        std::fs::read(&run.wasm).map_err(|e| RunError(format!("cannot read {wasm_name}: {e}")))?;
    if !wasmparser::Parser::is_component(&bytes) {
        return Err(RunError(format!(
            "{wasm_name}: `wrec serve` needs a wasi:http/proxy component, and this is a core module (record a command module with `wrec {}`)",
            super::shell_quote(&wasm_name)
        )));
    }
    let mut config = Config::new();
    crate::configure(&mut config);
    if run.cache {
        if let Ok(cache) = wasmtime::Cache::from_file(None) {
            config.cache(Some(cache));
        }
    }
    let engine =
        Engine::new(&config).map_err(|e| RunError(format!("cannot set up Wasmtime: {e:#}")))?;
    let component = Component::new(&engine, &bytes).map_err(|e| {
        RunError(format!(
            "{wasm_name}: not a valid WebAssembly component: {}",
            one_line(&e)
        ))
    })?;
    let mut linker: Linker<Host> = Linker::new(&engine);
    wasmtime_wasi_http::p2::add_to_linker_async(&mut linker)
        .map_err(|e| RunError(format!("cannot set up WASI: {}", one_line(&e))))?;
    if run.unknown_imports != UnknownImports::Error {
        linker
            .define_unknown_imports_as_traps(&component)
            .map_err(|e| RunError(format!("{wasm_name}: {}", one_line(&e))))?;
    }
    let pre = linker
        .instantiate_pre(&component)
        .map_err(|e| RunError(format!("{wasm_name}: {}", one_line(&e))))?;
    let pre = ProxyPre::new(pre).map_err(|e| {
        RunError(format!(
            "{wasm_name}: not a wasi:http/proxy component: it does not export `wasi:http/incoming-handler` ({}); record a command component with `wrec {}`",
            one_line(&e),
            super::shell_quote(&wasm_name)
        ))
    })?;
    // The guest sees its file name as argv[0], as with `wasmtime serve`.
    let argv = RunOptions {
        args: Vec::new(),
        ..run.clone()
    }
    .guest_argv();
    // `--dir` directories that cannot be opened are reported now.
    wasi_context(run, &argv)?;

    // Listening before the trace exists: an address in use leaves no trace.
    let listener = std::net::TcpListener::bind(opts.addr)
        .map_err(|e| RunError(format!("cannot listen on {}: {e}", opts.addr)))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| RunError(format!("cannot listen on {}: {e}", opts.addr)))?;
    let local = listener
        .local_addr()
        .map_err(|e| RunError(format!("cannot listen on {}: {e}", opts.addr)))?;

    let recorder = Recorder::create(
        &run.output,
        RecorderOptions {
            args: argv.clone(),
            ..run.recording.clone()
        },
    )
    .map_err(|e| RunError(e.to_string()))?;
    let recorder = Arc::new(recorder);
    recorder
        .add_component(&component, &run.wasm, &bytes)
        .map_err(|e| RunError(e.to_string()))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_time()
        .enable_io()
        // A worker's sampler ends (its end record) with the worker.
        .on_thread_stop(|| {
            SAMPLER.with(|s| drop(std::mem::replace(&mut *s.borrow_mut(), WorkerSampler::None)));
        })
        .build()
        .map_err(|e| RunError(format!("cannot start the server's threads: {e}")))?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let signals = StopSignals::start(&recorder, stop_tx, run.quiet)
        .map_err(|e| RunError(format!("cannot catch stop signals: {e}")))?;

    let server = Arc::new(Server {
        recorder: recorder.clone(),
        pre,
        opts: run.clone(),
        argv,
        next_request: AtomicU64::new(0),
        next_worker: AtomicU32::new(0),
        sampler_failed: AtomicBool::new(false),
        in_flight: Mutex::new(0),
        idle: tokio::sync::Notify::new(),
    });
    eprintln!("Serving HTTP on http://{local}/");
    let served = runtime.block_on(accept_loop(server.clone(), listener, stop_rx));
    // The workers stop, and with them their samplers.
    runtime.shutdown_timeout(Duration::from_secs(10));
    let requests = server.next_request.load(Ordering::Relaxed);
    drop(server);

    let (exit_code, error, exit) = match served {
        Ok(()) => (0, None, ExitInfo::exited(0)),
        Err(e) => {
            let text = format!("the server failed: cannot accept connections: {e}");
            (
                super::ERROR_EXIT_CODE,
                Some(format!("wrec: error: {text}")),
                ExitInfo {
                    kind: ExitKind::Failed,
                    status: i64::from(super::ERROR_EXIT_CODE),
                    message: text,
                },
            )
        }
    };
    let summary = match Arc::try_unwrap(recorder) {
        Ok(recorder) => recorder.finish(exit),
        // A worker that did not stop in time still holds it.
        Err(recorder) => recorder.finish_shared(exit),
    };
    // A signal that came meanwhile found the recording finished and did
    // nothing; from here on they are ignored.
    drop(signals);
    Ok(ServeOutcome {
        exit_code,
        error,
        requests,
        summary,
    })
}

/// The stop signals while serving: the first drains the server, a second
/// ends the recording at once and exits (128 + the signal).
struct StopSignals {
    handle: signal_hook::iterator::Handle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StopSignals {
    fn start(
        recorder: &Recorder,
        stop: tokio::sync::watch::Sender<bool>,
        quiet: bool,
    ) -> std::io::Result<StopSignals> {
        let mut signals = signal_hook::iterator::Signals::new(STOP_SIGNALS)?;
        let handle = signals.handle();
        let ending = recorder.ending();
        let thread = std::thread::Builder::new()
            .name("wrec-signals".into())
            .spawn(move || {
                let mut first = true;
                for sig in signals.forever() {
                    let name = signal_hook::low_level::signal_name(sig).unwrap_or("a signal");
                    if first {
                        first = false;
                        eprintln!(
                            "wrec: {name} received: finishing the requests in progress, then the trace (send it again to stop at once)"
                        );
                        let _ = stop.send(true);
                        continue;
                    }
                    let code = 128 + sig;
                    let exit = ExitInfo {
                        kind: ExitKind::Signaled,
                        status: i64::from(code),
                        message: format!("wrec received {name} twice and stopped serving"),
                    };
                    ending.finish_then(exit, |result| {
                        match result {
                            Ok(s) if !quiet => eprintln!("{}", super::summary_line(&s)),
                            Ok(_) => {}
                            Err(e) => {
                                eprintln!("wrec: error: the trace could not be finished: {e}")
                            }
                        }
                        std::process::exit(code)
                    });
                }
            })?;
        Ok(StopSignals {
            handle,
            thread: Some(thread),
        })
    }
}

impl Drop for StopSignals {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
