//! The C ABI as C sees it: `include/gstack.h` against the built
//! `libgstack.a` / `libgstack.so`.
//!
//! * Drift: every function the header declares is exported by both
//!   libraries with the parameter and return types of its Rust definition
//!   in `src/ffi.rs` (and every `gs_*` function there is declared); every
//!   struct has the same size and field offsets in C (a C program prints
//!   them) as in Rust; every constant and error text agrees.
//! * The header compiles as strict C99 and as C++.
//! * `tests/c/errors.c` walks every error path and checks the codes.
//! * The examples of `examples/c/` build and run: the channel pipeline
//!   (static library), the managed recursion (shared and static).
//!
//! The C compiler is `cc`, or `aarch64-linux-gnu-gcc` when this test runs
//! as aarch64 under `GSTACK_TEST_RUNNER` (qemu); `GSTACK_TEST_CC` overrides.
//! The C programs run under that runner too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// What the static library needs besides libc (`cargo rustc -- --print
/// native-static-libs`).
const STATIC_LIBS: &[&str] = &["-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl"];

/// Entry points for managed code the header declares: defined by the asm
/// (or by src/guards.rs), not by src/ffi.rs.
const MANAGED_ENTRY_POINTS: &[&str] = &[
    "gs_morestack",
    "gs_yield",
    "gs_entersyscall",
    "gs_exitsyscall",
    "gs_libcall",
    "gs_pin",
    "gs_unpin",
];

fn arch() -> &'static str {
    std::env::consts::ARCH
}

/// The C compiler for the architecture this test was built for.
fn cc() -> String {
    if let Ok(cc) = std::env::var("GSTACK_TEST_CC") {
        return cc;
    }
    match arch() {
        "aarch64" if cfg!(target_arch = "aarch64") && runner().is_empty() => "cc".into(),
        "aarch64" => "aarch64-linux-gnu-gcc".into(),
        _ => "cc".into(),
    }
}

fn nm() -> String {
    if arch() == "aarch64" && !runner().is_empty() {
        "aarch64-linux-gnu-nm".into()
    } else {
        "nm".into()
    }
}

fn runner() -> Vec<String> {
    std::env::var("GSTACK_TEST_RUNNER")
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// Where cargo put libgstack.{a,so} for this test binary: its own
/// directory (`deps`, built by this very cargo invocation), else the
/// profile directory above it.
fn libdir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().unwrap().to_path_buf();
    for d in [deps.clone(), deps.parent().unwrap().to_path_buf()] {
        if d.join("libgstack.a").exists() && d.join("libgstack.so").exists() {
            return d;
        }
    }
    panic!(
        "libgstack.a and libgstack.so not found next to {} (is crate-type staticlib+cdylib?)",
        exe.display()
    )
}

/// A scratch directory for this architecture's C builds.
fn outdir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("c_abi-{}", arch()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn describe(what: &str, out: &Output) -> String {
    format!(
        "{what}: {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start {cmd:?}: {e}"));
    assert!(out.status.success(), "{}", describe(what, &out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Compile and link C (and assembly) sources into `name`; `shared` links
/// libgstack.so (with an rpath), else libgstack.a.
fn build(name: &str, sources: &[&str], shared: bool) -> PathBuf {
    let lib = libdir();
    let exe = outdir().join(name);
    let mut cmd = Command::new(cc());
    cmd.args(["-std=gnu11", "-g", "-O1", "-Wall", "-Wextra", "-Werror"])
        .arg(format!("-I{ROOT}/include"))
        .arg("-o")
        .arg(&exe);
    for s in sources {
        cmd.arg(Path::new(ROOT).join(s));
    }
    if shared {
        cmd.arg(format!("-L{}", lib.display()))
            .arg("-lgstack")
            .arg(format!("-Wl,-rpath,{}", lib.display()))
            .arg("-Wl,-z,now");
    } else {
        cmd.arg(lib.join("libgstack.a")).args(STATIC_LIBS);
    }
    run_ok(&mut cmd, &format!("build {name}"));
    exe
}

/// Run a built C program (under the runner, if any).
fn run(exe: &Path) -> String {
    let r = runner();
    let mut cmd = match r.split_first() {
        Some((p, args)) => {
            let mut c = Command::new(p);
            c.args(args).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    run_ok(&mut cmd, &format!("run {}", exe.display()))
}

// ---- parsing the header and src/ffi.rs -------------------------------------

/// A function's return type and parameter types, in a shared vocabulary:
/// `i32`, `u32`, `u64`, `usize`, `c_char`, `c_void`, Rust struct names,
/// `*const T`, `*mut T`, `fnptr`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Sig {
    ret: String,
    params: Vec<String>,
}

fn c_base(t: &str) -> String {
    match t {
        "int" => "i32",
        "unsigned" => "u32",
        "size_t" | "uintptr_t" => "usize",
        "uint64_t" | "gs_chan" => "u64",
        "uint32_t" => "u32",
        "char" => "c_char",
        "void" => "c_void",
        "gs_config" => "GsConfig",
        "gs_stats_t" => "GsStats",
        "gs_gc_report" => "GsGcReport",
        "gs_root" => "GsRoot",
        "gs_func_desc" => "GsFuncDesc",
        "gs_callsite" => "GsCallsite",
        "gs_select_case" => "GsSelectCase",
        "gs_g" => "G",
        other => panic!("header: unknown C type {other:?}"),
    }
    .to_string()
}

/// A C type (with or without a parameter name) in the shared vocabulary.
fn c_type(decl: &str, is_param: bool) -> String {
    if decl.contains("(*") {
        return "fnptr".into();
    }
    let spaced = decl.replace('*', " * ");
    let mut toks: Vec<&str> = spaced.split_whitespace().collect();
    let idents = toks.iter().filter(|t| **t != "*" && **t != "const").count();
    if is_param && idents >= 2 {
        toks.pop(); // the parameter's name
    }
    let stars = toks.iter().filter(|t| **t == "*").count();
    let base = toks
        .iter()
        .find(|t| **t != "*" && **t != "const")
        .unwrap_or_else(|| panic!("header: no type in {decl:?}"));
    let konst = toks.first() == Some(&"const");
    let mut s = c_base(base);
    for i in 0..stars {
        let q = if i == 0 && konst { "*const " } else { "*mut " };
        s = format!("{q}{s}");
    }
    s
}

/// Split at commas outside brackets.
fn split_top(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0i32);
    for ch in s.chars() {
        match ch {
            '(' | '<' | '[' => depth += 1,
            ')' | '>' | ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out.into_iter().map(|x| x.trim().to_string()).collect()
}

/// The text between the parenthesis at `open` and its match.
fn parens(s: &str, open: usize) -> (&str, usize) {
    let mut depth = 0;
    for (i, ch) in s[open..].char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return (&s[open + 1..open + i], open + i + 1);
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced parentheses in {s:?}")
}

/// The first `gs_name(` in `s`: (name, where it starts, index of its
/// parenthesis).
fn first_gs_call(s: &str) -> Option<(String, usize, usize)> {
    let mut from = 0;
    while let Some(i) = s[from..].find("gs_").map(|i| i + from) {
        let word_start = i == 0 || !s[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_');
        let end = s[i..]
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map_or(s.len(), |e| i + e);
        let rest = s[end..].trim_start();
        if word_start && rest.starts_with('(') {
            return Some((s[i..end].to_string(), i, s.len() - rest.len()));
        }
        from = end;
    }
    None
}

/// Function prototypes of the preprocessed header, and the names of the
/// functions it defines itself (static inline).
fn header_prototypes() -> (BTreeMap<String, Sig>, BTreeSet<String>) {
    let out = run_ok(
        Command::new("cc")
            .args(["-E", "-P", "-std=gnu11"])
            .arg(format!("{ROOT}/include/gstack.h")),
        "preprocess gstack.h",
    );
    let mut protos = BTreeMap::new();
    let mut inline = BTreeSet::new();
    let mut stmt = String::new();
    let mut depth = 0;
    let mut body_of_fn = false;
    for ch in out.chars() {
        match ch {
            '{' => {
                if depth == 0 {
                    body_of_fn = stmt.contains("inline");
                    if body_of_fn {
                        let (name, _, _) = first_gs_call(&stmt).expect("inline function name");
                        inline.insert(name);
                    }
                }
                depth += 1;
            }
            '}' => {
                depth -= 1;
                if depth == 0 && body_of_fn {
                    stmt.clear();
                    body_of_fn = false;
                }
            }
            ';' if depth == 0 => {
                let s = std::mem::take(&mut stmt);
                let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
                if s.starts_with("typedef") {
                    continue;
                }
                if let Some((name, at, open)) = first_gs_call(&s) {
                    let ret = c_type(s[..at].trim_start_matches("extern "), false);
                    let (inner, _) = parens(&s, open);
                    let params = if inner.trim() == "void" {
                        Vec::new()
                    } else {
                        split_top(inner).iter().map(|p| c_type(p, true)).collect()
                    };
                    let ret = if ret == "c_void" {
                        "()".to_string()
                    } else {
                        ret
                    };
                    protos.insert(name, Sig { ret, params });
                }
            }
            _ if depth == 0 => stmt.push(ch),
            _ => {}
        }
    }
    (protos, inline)
}

fn rust_type(t: &str) -> String {
    let t = t.trim();
    if t.starts_with("Option<extern") {
        return "fnptr".into();
    }
    for (p, q) in [("*const ", "*const "), ("*mut ", "*mut ")] {
        if let Some(rest) = t.strip_prefix(p) {
            return format!("{q}{}", rust_type(rest));
        }
    }
    match t {
        "c_int" => "i32".into(),
        "c_uint" => "u32".into(),
        other => other.to_string(),
    }
}

/// The `#[no_mangle] pub [unsafe] extern "C" fn gs_*` of src/ffi.rs.
fn ffi_functions() -> BTreeMap<String, Sig> {
    let src = std::fs::read_to_string(format!("{ROOT}/src/ffi.rs")).unwrap();
    let mut out = BTreeMap::new();
    let key = "extern \"C\" fn ";
    let mut from = 0;
    while let Some(i) = src[from..].find(key).map(|i| i + from) {
        let name_start = i + key.len();
        let open = name_start + src[name_start..].find('(').unwrap();
        let name = src[name_start..open].trim().to_string();
        let (inner, after) = parens(&src, open);
        from = after;
        let line_start = src[..i].rfind('\n').map_or(0, |n| n + 1);
        let head = src[line_start..i].trim();
        let attr = src[..line_start].trim_end().ends_with("#[no_mangle]");
        if !name.starts_with("gs_") || !attr || !(head == "pub" || head == "pub unsafe") {
            continue;
        }
        let tail = &src[after..after + src[after..].find('{').unwrap()];
        let ret = match tail.trim().strip_prefix("->") {
            Some(r) => rust_type(r),
            None => "()".into(),
        };
        let params = split_top(inner)
            .iter()
            .map(|p| rust_type(p.split_once(':').expect("name: type").1))
            .collect();
        out.insert(name, Sig { ret, params });
    }
    out
}

/// Defined, global `gs_*` function symbols of a library (`dynamic`: the
/// dynamic symbol table of the .so).
fn exported(lib: &Path, dynamic: bool) -> BTreeSet<String> {
    let mut cmd = Command::new(nm());
    cmd.arg("--defined-only");
    if dynamic {
        cmd.arg("-D");
    }
    let text = run_ok(cmd.arg(lib), "nm");
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (_, kind, name) = (w.next()?, w.next()?, w.next()?);
            (kind == "T" && name.starts_with("gs_")).then(|| name.to_string())
        })
        .collect()
}

#[test]
fn header_matches_the_rust_definitions() {
    let (header, inline) = header_prototypes();
    let rust = ffi_functions();
    assert!(
        rust.len() >= 29,
        "parsed only {} functions of src/ffi.rs",
        rust.len()
    );
    assert_eq!(
        inline,
        BTreeSet::from(["gs_register_asm".to_string()]),
        "functions defined in the header"
    );
    let mut problems = Vec::new();
    for (name, sig) in &rust {
        match header.get(name) {
            None => problems.push(format!(
                "{name}: defined in src/ffi.rs, not declared in gstack.h"
            )),
            Some(h) if h != sig => problems.push(format!(
                "{name}: header says {h:?}, src/ffi.rs says {sig:?}"
            )),
            Some(_) => {}
        }
    }
    for name in header.keys() {
        if !rust.contains_key(name) && !MANAGED_ENTRY_POINTS.contains(&name.as_str()) {
            problems.push(format!(
                "{name}: declared in gstack.h, defined nowhere in src/ffi.rs"
            ));
        }
    }
    for name in MANAGED_ENTRY_POINTS {
        if !header.contains_key(*name) {
            problems.push(format!(
                "{name}: managed-code entry point not declared in gstack.h"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "gstack.h drifted:\n{}",
        problems.join("\n")
    );
}

#[test]
fn static_library_defines_every_declared_function() {
    let (header, _) = header_prototypes();
    let defined = exported(&libdir().join("libgstack.a"), false);
    let missing: Vec<_> = header.keys().filter(|n| !defined.contains(*n)).collect();
    assert!(missing.is_empty(), "libgstack.a lacks {missing:?}");
}

#[test]
fn shared_library_exports_every_declared_function() {
    let (header, _) = header_prototypes();
    let defined = exported(&libdir().join("libgstack.so"), true);
    let missing: Vec<_> = header.keys().filter(|n| !defined.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "libgstack.so does not export {missing:?}: managed code linked against the shared \
         library cannot call them.  (rustc exports only #[no_mangle] Rust items from a \
         cdylib; symbols defined in asm/*.S stay local.)"
    );
}

#[test]
fn struct_layouts_constants_and_texts_match() {
    let exe = build("layout", &["tests/c/layout.c"], false);
    let out = run(&exe);
    let mut c_layout = BTreeSet::new();
    let mut c_consts = BTreeMap::new();
    let mut c_texts = BTreeMap::new();
    for line in out.lines() {
        let w: Vec<&str> = if line.starts_with("strerror ") || line.starts_with("version ") {
            line.splitn(3, ' ').collect()
        } else {
            line.split(' ').collect()
        };
        match w[..] {
            ["const", name, v] => {
                c_consts.insert(name.to_string(), v.parse::<u64>().unwrap());
            }
            ["strerror", code, text] => {
                c_texts.insert(code.to_string(), text.to_string());
            }
            ["version", header, lib] => {
                assert_eq!(header, env!("CARGO_PKG_VERSION"), "GS_VERSION_STRING");
                assert_eq!(lib, env!("CARGO_PKG_VERSION"), "gs_version()");
            }
            [s, f, v, n] => {
                let (v, n) = (v.parse::<usize>().unwrap(), n.parse::<usize>().unwrap());
                c_layout.insert((s.to_string(), f.to_string(), v, n));
            }
            _ => panic!("bad line {line:?}"),
        }
    }
    let rust_layout: BTreeSet<_> = gstack::ffi::layout()
        .into_iter()
        .map(|(s, f, v, n)| (s.to_string(), f.to_string(), v, n))
        .collect();
    let only_c: Vec<_> = c_layout.difference(&rust_layout).collect();
    let only_rust: Vec<_> = rust_layout.difference(&c_layout).collect();
    assert!(
        only_c.is_empty() && only_rust.is_empty(),
        "struct layouts differ\n  C only:    {only_c:?}\n  Rust only: {only_rust:?}"
    );
    let rust_consts: BTreeMap<_, _> = gstack::ffi::constants()
        .into_iter()
        .map(|(n, v)| (n.to_string(), v))
        .collect();
    assert_eq!(c_consts, rust_consts, "constants");
    for &(code, _, text) in gstack::ffi::ERRORS {
        assert_eq!(
            c_texts.get(&code.to_string()).map(String::as_str),
            Some(text.to_str().unwrap()),
            "gs_strerror({code})"
        );
    }
    assert_eq!(
        c_texts.get("unknown").map(String::as_str),
        Some(gstack::ffi::UNKNOWN_ERROR.to_str().unwrap())
    );
}

#[test]
fn header_is_strict_c99_and_cplusplus() {
    let h = format!("{ROOT}/include/gstack.h");
    run_ok(
        Command::new(cc())
            .args([
                "-std=c99",
                "-pedantic",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-fsyntax-only",
            ])
            .args(["-x", "c", &h]),
        "gstack.h as C99",
    );
    // The header does not depend on the architecture: the host's C++
    // compiler checks it.
    if Command::new("c++").arg("--version").output().is_ok() {
        run_ok(
            Command::new("c++")
                .args(["-std=c++11", "-Wall", "-Wextra", "-Werror", "-fsyntax-only"])
                .args(["-x", "c++", &h]),
            "gstack.h as C++",
        );
    }
}

#[test]
fn every_error_path_gives_its_code() {
    let exe = build("errors", &["tests/c/errors.c"], false);
    let out = run(&exe);
    assert!(out.contains("checks passed"), "{out}");
}

#[test]
fn example_pipeline_static() {
    let exe = build("pipeline", &["examples/c/pipeline.c"], false);
    let out = run(&exe);
    assert!(out.contains("pipeline: ok"), "{out}");
}

fn managed_sources() -> [String; 2] {
    [
        "examples/c/managed.c".to_string(),
        format!("examples/c/recurse_{}.S", arch()),
    ]
}

#[test]
fn example_managed_static() {
    let s = managed_sources();
    let exe = build("managed_static", &[&s[0], &s[1]], false);
    let out = run(&exe);
    assert!(out.contains("managed: ok"), "{out}");
}

#[test]
fn example_managed_shared() {
    let s = managed_sources();
    let exe = build("managed_shared", &[&s[0], &s[1]], true);
    let out = run(&exe);
    assert!(out.contains("managed: ok"), "{out}");
}
