//! Reading an HTTP/1.1 response off a raw connection, byte for byte: for the
//! checks where framing itself is the point (chunks, trailers, what a
//! `Transfer-Encoding` line really says).

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

use super::outcome::{Failure, OrFail, fail};

/// One response as it was on the wire.
#[derive(Debug, Default)]
pub struct RawResponse {
    pub status: u16,
    /// Header lines in order, names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Trailer lines after the last chunk, names lowercased.
    pub trailers: Vec<(String, String)>,
    pub chunked: bool,
}

impl RawResponse {
    /// Every value of a header, in order.
    pub fn header(&self, name: &str) -> Vec<&str> {
        find(&self.headers, name)
    }

    pub fn trailer(&self, name: &str) -> Vec<&str> {
        find(&self.trailers, name)
    }
}

fn find<'a>(lines: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    lines
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Reads one response; `to_head` says the request was `HEAD` (no body).
/// The reader keeps what follows, for the next response on the connection.
pub async fn read_response<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    to_head: bool,
) -> Result<RawResponse, Failure> {
    let status_line = line(reader).await?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| fail(format!("not an HTTP status line: {status_line:?}")))?;
    let mut response = RawResponse {
        status,
        headers: fields(reader).await?,
        ..RawResponse::default()
    };
    let no_body = to_head || status / 100 == 1 || status == 204 || status == 304;
    let transfer_encoding = response
        .header("transfer-encoding")
        .join(",")
        .to_ascii_lowercase();
    let content_length = response
        .header("content-length")
        .first()
        .map(|v| v.trim().to_owned());
    if no_body {
        return Ok(response);
    }
    if transfer_encoding.contains("chunked") {
        response.chunked = true;
        loop {
            let size_line = line(reader).await?;
            let size = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16)
                .or_fail(&format!("reading a chunk size from {size_line:?}"))?;
            if size == 0 {
                response.trailers = fields(reader).await?;
                return Ok(response);
            }
            let start = response.body.len();
            response.body.resize(start + size, 0);
            reader
                .read_exact(&mut response.body[start..])
                .await
                .or_fail("reading a chunk (the connection closed mid-chunk)")?;
            let end = line(reader).await?;
            if !end.is_empty() {
                return Err(fail(format!(
                    "a chunk was not followed by CRLF but {end:?}"
                )));
            }
        }
    } else if let Some(length) = content_length {
        let length: usize = length.parse().or_fail("reading Content-Length")?;
        response.body.resize(length, 0);
        reader
            .read_exact(&mut response.body)
            .await
            .or_fail("reading a Content-Length body (the connection closed early)")?;
    } else {
        reader
            .read_to_end(&mut response.body)
            .await
            .or_fail("reading a close-delimited body")?;
    }
    Ok(response)
}

/// One CRLF-terminated line, without its CRLF; EOF is an error.
async fn line<R: AsyncRead + Unpin>(reader: &mut BufReader<R>) -> Result<String, Failure> {
    let mut line = String::new();
    let read = reader
        .read_line(&mut line)
        .await
        .or_fail("reading a line of the response")?;
    if read == 0 {
        return Err(fail(
            "the connection closed where a response line was expected",
        ));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Header (or trailer) lines up to the empty line.
async fn fields<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
) -> Result<Vec<(String, String)>, Failure> {
    let mut fields = Vec::new();
    loop {
        let line = line(reader).await?;
        if line.is_empty() {
            return Ok(fields);
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| fail(format!("a header line without a colon: {line:?}")))?;
        fields.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        if fields.len() > 1000 {
            return Err(fail("more than 1000 header lines"));
        }
    }
}

/// Sends `bytes` one at a time, `pause` apart (a slowloris client); `true`
/// if the proxy cut the connection off before the end, or answered 408.
pub async fn send_slowly<W, R>(
    write: &mut W,
    read: &mut R,
    bytes: &[u8],
    pause: std::time::Duration,
) -> bool
where
    W: tokio::io::AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
{
    use tokio::io::AsyncWriteExt;
    for byte in bytes {
        if write.write_all(&[*byte]).await.is_err() {
            return true;
        }
        tokio::time::sleep(pause).await;
    }
    // All sent: was the connection closed before the end?
    let mut answer = Vec::new();
    let _ = read.read_to_end(&mut answer).await;
    answer.is_empty() || answer.starts_with(b"HTTP/1.1 408")
}
