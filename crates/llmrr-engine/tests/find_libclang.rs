//! Issue 15: the build-dependency check finds libclang exactly. A machine that has only
//! `libclang-cpp` (the C++ library, not what bindgen loads) must be told it lacks libclang,
//! so that `scripts/ensure-build-deps.sh` installs `libclang-dev`.

#![expect(clippy::expect_used, reason = "test helpers fail the test loudly")]

use std::path::{Path, PathBuf};
use std::process::Command;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/lib/find-libclang.sh")
}

/// Run the detection against `root` (a prepared tree), with `LIBCLANG_PATH` if given.
fn detect(root: &Path, libclang_path: Option<&Path>) -> (bool, String) {
    let mut cmd = Command::new("bash");
    cmd.arg(script())
        .env("LLMRR_LIBCLANG_ROOT", root)
        .env_remove("LIBCLANG_PATH");
    if let Some(p) = libclang_path {
        cmd.env("LIBCLANG_PATH", p);
    }
    let out = cmd.output().expect("bash runs the script");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    )
}

fn touch(root: &Path, file: &str) {
    let path = root.join(file.trim_start_matches('/'));
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(&path, b"").expect("write");
}

#[test]
fn issue15_libclang_cpp_alone_is_not_libclang() {
    let tree = tempfile::tempdir().expect("tempdir");
    let root = tree.path();
    touch(root, "/usr/lib/x86_64-linux-gnu/libclang-cpp.so.14");
    touch(root, "/usr/lib/llvm-14/lib/libclang-cpp.so.14");
    touch(root, "/usr/lib/llvm-14/lib/libclang-cpp.so");
    assert_eq!(detect(root, None), (false, String::new()));

    // What libclang-dev (or libclang1) installs is found, wherever the distribution puts it.
    touch(root, "/usr/lib/x86_64-linux-gnu/libclang-14.so.1");
    let (found, dir) = detect(root, None);
    assert!(found);
    assert!(dir.ends_with("/usr/lib/x86_64-linux-gnu"), "{dir}");

    let other = tempfile::tempdir().expect("tempdir");
    touch(other.path(), "/usr/lib/llvm-17/lib/libclang.so");
    let (found, dir) = detect(other.path(), None);
    assert!(found && dir.ends_with("/usr/lib/llvm-17/lib"), "{dir}");
}

#[test]
fn issue15_libclang_path_is_honoured() {
    let empty = tempfile::tempdir().expect("tempdir");
    let custom = tempfile::tempdir().expect("tempdir");
    touch(custom.path(), "/libclang.so.18.1");
    let (found, dir) = detect(empty.path(), Some(custom.path()));
    assert!(found);
    assert_eq!(Path::new(&dir), custom.path());
    // A LIBCLANG_PATH holding only libclang-cpp is no libclang either.
    let cpp = tempfile::tempdir().expect("tempdir");
    touch(cpp.path(), "/libclang-cpp.so.18");
    assert!(!detect(empty.path(), Some(cpp.path())).0);
}
