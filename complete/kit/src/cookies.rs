//! Apps under one domain stay apart. `hello.localhost` and
//! `docs.localhost` are different sites to their developers, but one site
//! to a browser's cookie jar: an app may set a cookie for `localhost`, and
//! its siblings would receive it (session fixation, or reading a cookie
//! meant for another). Browsers refuse that for domains on the Public
//! Suffix List (`github.io`, `herokuapp.com`); the apps' domain is not on
//! it, so the proxy refuses in their place: a `Set-Cookie` whose `Domain`
//! is not the app's own host (or under it) is dropped. (Cookies an app's
//! scripts set with `document.cookie` never pass the proxy: only a real
//! public suffix stops those.) Kit of step 17.

use http::HeaderMap;
use http::header::SET_COOKIE;

/// Drops every `Set-Cookie` whose `Domain` attribute is not `host` or a
/// name under it; returns what was dropped (`name=…; Domain=…`), for the
/// log. A cookie without `Domain` is the host's alone: kept.
pub fn keep_to_own_host(headers: &mut HeaderMap, host: &str) -> Vec<String> {
    if !headers.contains_key(SET_COOKIE) {
        return Vec::new();
    }
    let host = host.to_ascii_lowercase();
    let mut dropped = Vec::new();
    let kept: Vec<_> = headers
        .get_all(SET_COOKIE)
        .iter()
        .filter(|value| {
            let text = String::from_utf8_lossy(value.as_bytes());
            match cookie_domain(&text) {
                Some(domain) if !(domain == host || domain.ends_with(&format!(".{host}"))) => {
                    let name = text.split(';').next().unwrap_or("").split('=').next();
                    dropped.push(format!("{}=…; Domain={domain}", name.unwrap_or("").trim()));
                    false
                }
                _ => true,
            }
        })
        .cloned()
        .collect();
    if !dropped.is_empty() {
        headers.remove(SET_COOKIE);
        for value in kept {
            headers.append(SET_COOKIE, value);
        }
    }
    dropped
}

/// The `Domain` attribute of a `Set-Cookie` value, lowercase, without the
/// leading dot browsers ignore (RFC 6265 §5.2.3); the last one wins.
fn cookie_domain(set_cookie: &str) -> Option<String> {
    set_cookie
        .split(';')
        .skip(1)
        .filter_map(|attribute| attribute.split_once('='))
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("domain"))
        .map(|(_, value)| value.trim().trim_start_matches('.').to_ascii_lowercase())
        .filter(|domain| !domain.is_empty())
        .last()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_app_own_host_keeps_its_cookies() {
        let mut headers = HeaderMap::new();
        for value in [
            "plain=1; Path=/",
            "own=2; Domain=hello.localhost",
            "dotted=3; domain=.HELLO.localhost; Secure",
            "below=4; Domain=api.hello.localhost",
            "parent=5; Domain=localhost",
            "sibling=6; Domain=docs.localhost",
            "elsewhere=7; Domain=example.com",
        ] {
            headers.append(SET_COOKIE, value.parse().expect("a header value"));
        }
        let dropped = keep_to_own_host(&mut headers, "hello.localhost");
        let kept: Vec<_> = headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|value| {
                value
                    .to_str()
                    .unwrap_or("")
                    .split('=')
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        assert_eq!(kept, ["plain", "own", "dotted", "below"]);
        assert_eq!(dropped.len(), 3, "{dropped:?}");
        assert!(dropped[0].starts_with("parent=…; Domain=localhost"));
    }
}
