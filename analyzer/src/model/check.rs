//! The validation every exporter runs before it reads a model.

use super::Profile;

impl Profile {
    /// Checks that every index in the model's tables is in range and that the
    /// stack tree has no cycle, so exporters can walk it without bounds or
    /// termination worries.
    pub fn check(&self) -> Result<(), String> {
        let p = self;
        for (i, f) in p.funcs.iter().enumerate() {
            if let Some(lib) = f.lib {
                if lib as usize >= p.libs.len() {
                    return Err(format!("func {i} refers to lib {lib} of {}", p.libs.len()));
                }
            }
        }
        for (i, n) in p.native_symbols.iter().enumerate() {
            if n.lib as usize >= p.libs.len() {
                return Err(format!(
                    "native symbol {i} refers to lib {} of {}",
                    n.lib,
                    p.libs.len()
                ));
            }
        }
        for (i, f) in p.frames.iter().enumerate() {
            if f.func as usize >= p.funcs.len() {
                return Err(format!(
                    "frame {i} refers to func {} of {}",
                    f.func,
                    p.funcs.len()
                ));
            }
            if let Some(n) = f.native_symbol {
                if n as usize >= p.native_symbols.len() {
                    return Err(format!(
                        "frame {i} refers to native symbol {n} of {}",
                        p.native_symbols.len()
                    ));
                }
            }
        }
        for (i, s) in p.stacks.iter().enumerate() {
            if s.frame as usize >= p.frames.len() {
                return Err(format!(
                    "stack {i} refers to frame {} of {}",
                    s.frame,
                    p.frames.len()
                ));
            }
            if let Some(parent) = s.parent {
                if parent as usize >= p.stacks.len() {
                    return Err(format!(
                        "stack {i} has parent {parent} of {}",
                        p.stacks.len()
                    ));
                }
            }
        }
        // Cycle check: 0 = unvisited, 1 = on the current path, 2 = reaches a root.
        let mut state = vec![0u8; p.stacks.len()];
        let mut path = Vec::new();
        for start in 0..p.stacks.len() {
            let mut cur = Some(start as u32);
            path.clear();
            while let Some(s) = cur {
                match state[s as usize] {
                    2 => break,
                    1 => return Err(format!("stack {s} is its own ancestor")),
                    _ => {}
                }
                state[s as usize] = 1;
                path.push(s);
                cur = p.stacks.get(s as usize).parent;
            }
            for &s in &path {
                state[s as usize] = 2;
            }
        }
        for t in &p.threads {
            for s in &t.samples {
                if let Some(st) = s.stack {
                    if st as usize >= p.stacks.len() {
                        return Err(format!(
                            "a sample of thread {} refers to stack {st} of {}",
                            t.tid,
                            p.stacks.len()
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}
