//! `sandbox.network: egress`: the server's process runs in a network namespace of its own,
//! with nothing but a loopback interface, made without privileges (a user namespace of its
//! own around it, mapping only its own uid and gid). There, between fork and exec, it opens a
//! TCP listener on `127.0.0.1:`[`PROXY_PORT`] and hands it to Warden over a socket pair made
//! before the fork, then closes its own copy: Warden accepts on it and serves what arrives
//! as its egress proxy (`proxy/egress/local_server.rs`). With no route and no other
//! interface, no other address (nor DNS, nor UDP) is reachable from the namespace: the
//! namespace is the filter, and the proxy the only way out.
//!
//! The child's side makes system calls only (no allocation: stack buffers); Warden's side
//! (the socket pair, receiving the listener) runs before the fork and after the spawn.
//! Whether the kernel lets an unprivileged process do this is probed once ([`available`]).

use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};
use std::sync::LazyLock;

/// The port of the proxy inside the server's namespace (`HTTPS_PROXY=http://127.0.0.1:3128`):
/// the namespace is the process's own, so no other listener can hold it.
pub const PROXY_PORT: u16 = 3128;

/// `SIOCGIFFLAGS` and `SIOCSIFFLAGS` (the same on every Linux architecture Warden builds for).
const SIOCGIFFLAGS: libc::c_ulong = 0x8913;
const SIOCSIFFLAGS: libc::c_ulong = 0x8914;

/// `struct ifreq` with its flags member (`ifr_flags`), padded to the kernel's size.
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// The two ends of the hand-off: Warden keeps `warden`, the child sends on `child`. Both are
/// close-on-exec: the server's program inherits neither.
#[derive(Debug)]
pub struct Channel {
    warden: OwnedFd,
    child: OwnedFd,
}

impl Channel {
    /// A connected pair of sequenced-packet Unix sockets, made by Warden before the fork.
    pub fn new() -> io::Result<Channel> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two descriptors the call fills in.
        if unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        } != 0
        {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both were just made and are owned by nothing else.
        let (warden, child) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Channel { warden, child })
    }

    /// The child's end, as the child will use it (the descriptor survives the fork).
    pub fn child_fd(&self) -> RawFd {
        self.child.as_raw_fd()
    }

    /// After the spawn (which returns once the child has exec'd or failed, so after its
    /// hand-off): the listener the child sent, in its namespace. Warden's copy of the child's
    /// end is closed first: nothing sent later can be waiting.
    pub fn receive(self) -> io::Result<std::net::TcpListener> {
        drop(self.child);
        let fd = receive_fd(self.warden.as_raw_fd())?;
        let listener = std::net::TcpListener::from(fd);
        listener.set_nonblocking(true)?;
        Ok(listener)
    }
}

/// In the child, between fork and exec: a user and network namespace of its own with
/// loopback up, a listener on `127.0.0.1:`[`PROXY_PORT`] sent over `channel`; the child's
/// copies of both closed (the program runs without them).
pub fn enter(channel: RawFd) -> io::Result<()> {
    isolate()?;
    let listener = listen()?;
    let sent = send_fd(channel, listener);
    // SAFETY: closing descriptors this process owns; Warden holds its own copy of the
    // listener now.
    unsafe {
        libc::close(listener);
        libc::close(channel);
    }
    sent
}

/// A new user namespace (mapping this process's uid and gid to themselves, no supplementary
/// groups) holding a new network namespace, whose loopback is brought up.
fn isolate() -> io::Result<()> {
    // SAFETY: plain system calls.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    // SAFETY: a plain system call.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    write_file(c"/proc/self/setgroups", b"deny")?;
    let mut line = [0u8; 40];
    let n = id_map(&mut line, uid);
    write_file(c"/proc/self/uid_map", &line[..n])?;
    let n = id_map(&mut line, gid);
    write_file(c"/proc/self/gid_map", &line[..n])?;
    loopback_up()
}

/// `"<id> <id> 1"` into `buf`; its length.
fn id_map(buf: &mut [u8; 40], id: u32) -> usize {
    let mut digits = [0u8; 10];
    let mut n = 0;
    let mut v = id;
    loop {
        digits[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let mut len = 0;
    for _ in 0..2 {
        for i in (0..n).rev() {
            buf[len] = digits[i];
            len += 1;
        }
        buf[len] = b' ';
        len += 1;
    }
    buf[len] = b'1';
    len + 1
}

/// Writes `content` to `path` in one `write`.
fn write_file(path: &std::ffi::CStr, content: &[u8]) -> io::Result<()> {
    // SAFETY: `path` is NUL-terminated; the descriptor is closed below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `content` is valid for its length; `fd` is open.
    let written = unsafe { libc::write(fd, content.as_ptr().cast(), content.len()) };
    let error = io::Error::last_os_error();
    // SAFETY: `fd` is ours.
    unsafe { libc::close(fd) };
    if usize::try_from(written).ok() != Some(content.len()) {
        return Err(error);
    }
    Ok(())
}

/// Brings the namespace's `lo` up.
fn loopback_up() -> io::Result<()> {
    // SAFETY: a plain system call.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut req = IfReq {
        name: [0; 16],
        flags: 0,
        _pad: [0; 22],
    };
    req.name[..2].copy_from_slice(b"lo");
    // SAFETY: `req` is a valid `struct ifreq` for both requests; `fd` is open.
    let result = unsafe {
        if libc::ioctl(fd, SIOCGIFFLAGS as _, &mut req) != 0 {
            -1
        } else {
            req.flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(fd, SIOCSIFFLAGS as _, &req)
        }
    };
    let error = io::Error::last_os_error();
    // SAFETY: `fd` is ours.
    unsafe { libc::close(fd) };
    if result != 0 {
        return Err(error);
    }
    Ok(())
}

/// A TCP listener on `127.0.0.1:`[`PROXY_PORT`] (close-on-exec); its descriptor.
fn listen() -> io::Result<RawFd> {
    // SAFETY: a plain system call.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: PROXY_PORT.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: `addr` is a valid `sockaddr_in` of the size given; `fd` is open.
    let bound = unsafe {
        libc::bind(
            fd,
            (&raw const addr).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ) == 0
            && libc::listen(fd, 128) == 0
    };
    if !bound {
        let error = io::Error::last_os_error();
        // SAFETY: `fd` is ours.
        unsafe { libc::close(fd) };
        return Err(error);
    }
    Ok(fd)
}

/// Room for one control message carrying one descriptor, aligned as `cmsghdr`.
#[repr(C)]
union Control {
    _align: libc::cmsghdr,
    buf: [u8; 64],
}

/// `byte` as the data of a message.
fn one_byte(byte: &mut [u8; 1]) -> libc::iovec {
    libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    }
}

/// A message of `iov` with room for `control` (all of it).
fn message(iov: &mut libc::iovec, control: &mut Control) -> libc::msghdr {
    // SAFETY: an all-zero msghdr is valid (no data, no control).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    // SAFETY: any view of the union's bytes is valid.
    msg.msg_control = unsafe { control.buf.as_mut_ptr().cast() };
    msg.msg_controllen = size_of::<Control>() as _;
    msg
}

/// Sends `fd` over the Unix socket `channel` (`SCM_RIGHTS`), with one byte of data.
fn send_fd(channel: RawFd, fd: RawFd) -> io::Result<()> {
    let mut byte = [1u8];
    let mut iov = one_byte(&mut byte);
    let mut control = Control { buf: [0; 64] };
    // SAFETY: the message's pointers are to live stack values, and the control message
    // written lies within `control` (CMSG_SPACE(4) <= 64).
    unsafe {
        let mut msg = message(&mut iov, &mut control);
        msg.msg_controllen = libc::CMSG_SPACE(size_of::<RawFd>() as u32) as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        if libc::sendmsg(channel, &msg, libc::MSG_NOSIGNAL) != 1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The descriptor waiting on `channel`, without waiting: none there is an error.
fn receive_fd(channel: RawFd) -> io::Result<OwnedFd> {
    let mut byte = [0u8];
    let mut iov = one_byte(&mut byte);
    let mut control = Control { buf: [0; 64] };
    // SAFETY: as in `send_fd`; the descriptor read is checked to be one the kernel put there.
    unsafe {
        let mut msg = message(&mut iov, &mut control);
        let n = libc::recvmsg(
            channel,
            &mut msg,
            libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC,
        );
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if n != 1
            || cmsg.is_null()
            || (*cmsg).cmsg_level != libc::SOL_SOCKET
            || (*cmsg).cmsg_type != libc::SCM_RIGHTS
            || (*cmsg).cmsg_len as usize != libc::CMSG_LEN(size_of::<RawFd>() as u32) as usize
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the server's process sent no listener",
            ));
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Whether this kernel lets Warden's user make the namespaces (`unshare` of a user and a
/// network namespace, the id maps, loopback up): tried once, in a child that does only that.
/// `Err` says why not (unprivileged user namespaces switched off, `user.max_user_namespaces`
/// 0, an AppArmor or seccomp restriction).
pub fn available() -> Result<(), String> {
    static PROBED: LazyLock<Result<(), String>> = LazyLock::new(probe);
    PROBED.clone()
}

/// Forks a child that makes the namespaces and exits with 0, or with the `errno` it met.
fn probe() -> Result<(), String> {
    // SAFETY: the child makes system calls only, then `_exit`s; the parent waits for it.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!(
            "cannot start a process to probe them: {}",
            io::Error::last_os_error()
        ));
    }
    if pid == 0 {
        let code = match isolate() {
            Ok(()) => 0,
            Err(e) => e.raw_os_error().unwrap_or(255).clamp(1, 255),
        };
        // SAFETY: ends the child without running anything of the parent's.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    loop {
        // SAFETY: waits for the child just forked.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return Err(format!(
                "cannot wait for the probe: {}",
                io::Error::last_os_error()
            ));
        }
    }
    match libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)) {
        Some(0) => Ok(()),
        Some(code) => Err(io::Error::from_raw_os_error(code).to_string()),
        None => Err("the probe did not exit".to_owned()),
    }
}
