//! Compiles a wasm module the way `wrec` does and writes its compiled code
//! (`Module::text()`) and function table, for checking Cranelift's
//! prologues and epilogues with objdump:
//!
//! ```text
//! cargo run -p wrec --example dump_text -- fixtures/fib-O2.wasm /tmp/fib.text
//! objdump -D -b binary -mi386:x86-64 /tmp/fib.text
//! ```
use std::io::Write;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(wasm), Some(out)) = (args.get(1), args.get(2)) else {
        anyhow::bail!("usage: dump_text WASM OUT.text (writes OUT.text and OUT.text.funcs)");
    };
    let mut config = wasmtime::Config::new();
    config.generate_address_map(true);
    let engine = wasmtime::Engine::new(&config)?;
    let module = wasmtime::Module::from_file(&engine, wasm)?;
    std::fs::write(out, module.text())?;
    let mut f = std::fs::File::create(format!("{out}.funcs"))?;
    for func in module.functions() {
        writeln!(
            f,
            "{:#08x} {:#06x} {} {}",
            func.offset,
            func.len,
            func.index.as_u32(),
            func.name.as_deref().unwrap_or("?")
        )?;
    }
    println!(
        "text at {:p}, {} bytes, {} functions",
        module.text().as_ptr(),
        module.text().len(),
        module.functions().len()
    );
    Ok(())
}
