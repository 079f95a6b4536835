//! Reads one file of a policy set: a regular file (through a symlink too) of at most
//! [`MAX_BYTES`]. Whoever can write the policy directory but not sign bundles could otherwise
//! stop the gateway from starting or reloading with a named pipe called `x.cedar` (reading it
//! waits for a writer that never comes, on a runtime thread) or exhaust its memory with a huge
//! file, which is read whole to be digested before the signature check refuses it.

use std::fs::File;
use std::io::{self, Read as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// The largest policy, schema or manifest file read (a whole policy set is a few hundred KiB).
pub const MAX_BYTES: u64 = 16 * 1024 * 1024;

/// The bytes of `path`, a regular file of at most [`MAX_BYTES`].
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    // Opened without waiting: opening a named pipe for reading would wait for a writer.
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (a policy set is made of regular files)",
        ));
    }
    if meta.len() > MAX_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // A file that grows while it is read is cut at one byte past the limit and refused.
    file.take(MAX_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

/// The text of `path`, as [`read`] reads it, in UTF-8.
pub fn read_to_string(path: &Path) -> io::Result<String> {
    String::from_utf8(read(path)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

fn too_large() -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!(
            "larger than {} MiB: not a policy file",
            MAX_BYTES / 1024 / 1024
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_pipe_is_refused_without_waiting_for_a_writer() {
        let tmp = tempfile::tempdir().unwrap();
        let pipe = tmp.path().join("x.cedar");
        let name = std::ffi::CString::new(pipe.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path and a mode; mkfifo touches nothing else.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let e = read(&pipe).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }

    #[test]
    fn a_file_over_the_limit_is_refused_and_a_symlinked_file_is_read() {
        let tmp = tempfile::tempdir().unwrap();
        let big = tmp.path().join("big.cedar");
        File::create(&big).unwrap().set_len(MAX_BYTES + 1).unwrap();
        let e = read(&big).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge, "{e}");
        let small = tmp.path().join("a.cedar");
        std::fs::write(&small, "permit(principal, action, resource);").unwrap();
        let link = tmp.path().join("b.cedar");
        std::os::unix::fs::symlink(&small, &link).unwrap();
        assert_eq!(
            read_to_string(&link).unwrap(),
            "permit(principal, action, resource);"
        );
    }
}
