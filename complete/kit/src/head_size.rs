//! Step 09's bound on a request head, kept without hyper's read buffer.
//! hyper-util's `auto` has no exact HTTP/1.1 head limit, so step 09 bounds
//! a head twice: by the buffer hyper reads it into (64 KiB), and by
//! `head_len` in its service. Step 14 serves with a service of its own,
//! and gives up the first bound, because that buffer holds bodies too:
//! with it, an upload was read 64 KiB at a time, and step 17 spent 58,000
//! to 61,000 instructions a MiB passing it on; with hyper's own buffer,
//! 15,000 to 17,500 (`bench/bytes.py`; hyper's floor: 10,500 to 14,000).
//! In one run of `bench/compare.py`, step 17's 256 MiB upload took 480 ms
//! of CPU a GiB and 0.29 s, step 10's (64 KiB reads) 680 ms and 0.38 s.
//! So from step 14 on, hyper's buffer is back (about 400 KiB: heads over
//! it are hyper's `431`), and [`refuse_big_head`] answers the heads
//! between the two.

use http::{Request, Response, StatusCode, Version};
use workshop::body::{Body, text};
use workshop::http2::{MAX_REQUEST_HEAD, head_len};

/// What hyper reads a connection into, at most: its default, about 400
/// KiB (hyper's private `DEFAULT_MAX_BUFFER_SIZE`, `8192 + 4096 * 100`),
/// which `max_buf_size` cannot ask for by name.
pub const READ_BUFFER: usize = 8 * 1024 + 100 * 4 * 1024;

/// `431` for an HTTP/1.1 request whose head (step 09's `head_len`) was
/// over step 09's bound. (An HTTP/2 header list is bounded by h2 before it
/// is decoded.)
pub fn refuse_big_head<B>(request: &Request<B>) -> Option<Response<Body>> {
    if request.version() >= Version::HTTP_2 {
        return None;
    }
    (head_len(request) > MAX_REQUEST_HEAD).then(|| {
        text(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "431 Request Header Fields Too Large",
        )
    })
}
