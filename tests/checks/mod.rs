//! Every named check, grouped by the step that introduces it. The names are
//! the rows of `tests/steps.toml`.

mod bad_input;
mod bodies;
mod forwarding;
mod headers;
mod server;

use crate::harness::run::Check;

macro_rules! checks {
    ($($module:ident::$name:ident),* $(,)?) => {
        /// All checks, in no particular order (the table orders them).
        pub const ALL: &[Check] = &[
            $(Check { name: stringify!($name), run: |ctx| Box::pin($module::$name(ctx)) },)*
        ];
    };
}

checks![
    server::answers_http11,
    server::keep_alive,
    server::one_task_per_connection,
    server::invalid_upstream_exits_2,
    bad_input::malformed_request_line,
    bad_input::header_without_colon,
    bad_input::huge_headers,
    bad_input::garbage_bytes,
    forwarding::forwards_to_upstream,
    forwarding::upstream_status,
    forwarding::keeps_client_host,
    forwarding::request_headers_forwarded,
    forwarding::upstream_down_502,
    forwarding::starts_origin_without_upstream,
    bodies::request_body_intact,
    bodies::response_body_intact,
    bodies::upload_1gib_bounded,
    bodies::download_1gib_bounded,
    bodies::first_bytes_early,
    bodies::slow_client_backpressure,
    headers::response_headers_copied,
    headers::repeated_response_headers,
];

pub fn find(name: &str) -> Option<&'static Check> {
    ALL.iter().find(|check| check.name == name)
}
