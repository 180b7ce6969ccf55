//! A WASI 0.2 command component: compiled, linked with WASI 0.2's async host
//! functions, and run through its `wasi:cli/run` export on a fiber, as
//! `wasmtime run` runs a component.

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::Engine;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::{
    one_line, record, wasi_context, Program, RunError, RunOptions, RunOutcome, UnknownImports,
};

/// The store's data: the WASI context and the resources it hands out.
struct Host {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// Compiles, links and runs the component `bytes` while recording it.
pub(super) fn run(
    opts: &RunOptions,
    engine: &Engine,
    bytes: &[u8],
) -> Result<RunOutcome, RunError> {
    let wasm_name = opts.wasm.display().to_string();
    let component = Component::new(engine, bytes).map_err(|e| {
        RunError(format!(
            "{wasm_name}: not a valid WebAssembly component: {}",
            one_line(&e)
        ))
    })?;

    // Before linking: a proxy's imports (wasi:http) are not a command's.
    if is_proxy(engine, &component) {
        return Err(RunError(format!(
            "{wasm_name}: a wasi:http/proxy component, not a command (no `wasi:cli/run` export): serve it with `wrec serve {}`",
            super::shell_quote(&wasm_name)
        )));
    }

    let argv = opts.guest_argv();
    let ctx = wasi_context(opts, &argv)?.build();
    let store = wasmtime::Store::new(
        engine,
        Host {
            ctx,
            table: ResourceTable::new(),
        },
    );
    let mut linker: Linker<Host> = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)
        .map_err(|e| RunError(format!("cannot set up WASI: {}", one_line(&e))))?;
    match opts.unknown_imports {
        UnknownImports::Error => {}
        // A component's imports have no default values to give; functions
        // that trap are the closest.
        UnknownImports::Trap | UnknownImports::DefaultValues => linker
            .define_unknown_imports_as_traps(&component)
            .map_err(|e| RunError(format!("{wasm_name}: {}", one_line(&e))))?,
    }
    // Resolves every import now, so a missing one is reported before a
    // trace exists.
    let pre = linker
        .instantiate_pre(&component)
        .map_err(|e| RunError(format!("{wasm_name}: {}", one_line(&e))))?;
    let pre = CommandPre::new(pre).map_err(|e| {
        RunError(format!(
            "{wasm_name}: not a WASI command component: it does not export `wasi:cli/run` ({})",
            one_line(&e)
        ))
    })?;

    record(
        opts,
        Program {
            argv,
            store,
            describe: |recorder: &crate::Recorder| {
                recorder
                    .add_component(&component, &opts.wasm, bytes)
                    .map(|_| ())
            },
            run: |store: &mut wasmtime::Store<Host>| {
                // On this thread: `block_on` polls the call, and so runs
                // its fiber, here.
                wasmtime_wasi::runtime::in_tokio(async {
                    let command = pre.instantiate_async(&mut *store).await?;
                    let result = command
                        .wasi_cli_run()
                        .call_run(&mut *store)
                        .await
                        .map_err(|e| e.context("failed to invoke `run` function"))?;
                    // `run` returning an error is exit status 1, as with
                    // `wasmtime run`.
                    result.map_err(|()| wasmtime_wasi::I32Exit(1).into())
                })
            },
            context: format!("failed to run main module `{wasm_name}`"),
        },
    )
}

/// Whether `component` exports `wasi:http/incoming-handler` (any version)
/// and no `wasi:cli/run`: a `wasi:http/proxy` component, for `wrec serve`.
fn is_proxy(engine: &Engine, component: &Component) -> bool {
    component
        .component_type()
        .exports(engine)
        .fold((false, false), |(http, run), (name, _)| {
            (
                http || name.starts_with("wasi:http/incoming-handler@"),
                run || name.starts_with("wasi:cli/run@"),
            )
        })
        == (true, false)
}
