//! A WASI preview 1 command module: compiled, linked with WASI's async host
//! functions, and run through its `_start` export on a fiber.

use wasmtime::{Engine, Linker, Module};
use wasmtime_wasi::p1::{self, WasiP1Ctx};

use super::{
    one_line, record, wasi_context, Program, RunError, RunOptions, RunOutcome, UnknownImports,
};

/// Compiles, links and runs the module `bytes` while recording it.
pub(super) fn run(
    opts: &RunOptions,
    engine: &Engine,
    bytes: &[u8],
) -> Result<RunOutcome, RunError> {
    let wasm_name = opts.wasm.display().to_string();
    let module = Module::new(engine, bytes).map_err(|e| {
        RunError(format!(
            "{wasm_name}: not a valid WebAssembly module: {}",
            one_line(&e)
        ))
    })?;
    match module.get_export("_start") {
        Some(wasmtime::ExternType::Func(f)) if f.params().len() == 0 && f.results().len() == 0 => {}
        _ => {
            return Err(RunError(format!(
                "{wasm_name}: not a WASI command: it exports no `_start` function taking and returning nothing"
            )))
        }
    }

    let argv = opts.guest_argv();
    let wasi = wasi_context(opts, &argv)?.build_p1();
    let mut store = wasmtime::Store::new(engine, wasi);
    let mut linker: Linker<WasiP1Ctx> = Linker::new(engine);
    p1::add_to_linker_async(&mut linker, |wasi| wasi)
        .map_err(|e| RunError(format!("cannot set up WASI: {}", one_line(&e))))?;
    match opts.unknown_imports {
        UnknownImports::Error => {}
        UnknownImports::Trap => linker
            .define_unknown_imports_as_traps(&module)
            .map_err(|e| RunError(format!("{wasm_name}: {}", one_line(&e))))?,
        UnknownImports::DefaultValues => linker
            .define_unknown_imports_as_default_values(&mut store, &module)
            .map_err(|e| RunError(format!("{wasm_name}: {}", one_line(&e))))?,
    }
    // Resolves every import now, so a missing one is reported before a
    // trace exists.
    let pre = linker
        .instantiate_pre(&module)
        .map_err(|e| RunError(format!("{wasm_name}: {}", one_line(&e))))?;

    record(
        opts,
        Program {
            argv,
            store,
            describe: |recorder: &crate::Recorder| {
                recorder.add_module(&module, &opts.wasm, bytes).map(|_| ())
            },
            run: |store: &mut wasmtime::Store<WasiP1Ctx>| {
                // On this thread: `block_on` polls the call, and so runs
                // its fiber, here.
                wasmtime_wasi::runtime::in_tokio(async {
                    let instance = pre.instantiate_async(&mut *store).await?;
                    let start = instance.get_typed_func::<(), ()>(&mut *store, "_start")?;
                    start.call_async(&mut *store, ()).await
                })
            },
            context: format!("failed to run main module `{wasm_name}`"),
        },
    )
}
