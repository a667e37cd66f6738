//! Every named check, grouped by the step that introduces it. The names are
//! the rows of `tests/steps.toml`.

mod bad_input;
mod bodies;
mod complete;
mod forwarding;
mod hardened;
mod headers;
mod hop_by_hop;
mod http11;
mod http2;
mod instances;
mod observed;
mod on_demand;
mod routing;
mod server;
mod streaming;
mod trailers;
mod try_lines;
mod websocket;
mod x_forwarded;

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
    try_lines::try_lines_work,
    bad_input::malformed_request_line,
    bad_input::header_without_colon,
    bad_input::huge_headers,
    bad_input::head_over_limit_431,
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
    hop_by_hop::hop_by_hop_request_stripped,
    hop_by_hop::hop_by_hop_response_stripped,
    hop_by_hop::te_trailers_only,
    hop_by_hop::trailers_plural_kept,
    hop_by_hop::empty_connection_header,
    x_forwarded::x_forwarded_for,
    x_forwarded::x_forwarded_host_proto,
    x_forwarded::x_forwarded_not_strippable,
    x_forwarded::forwarded_header,
    x_forwarded::no_x_forwarded_flag,
    x_forwarded::rewrite_host_flag,
    x_forwarded::upstream_base_path,
    x_forwarded::upstream_query_merged,
    trailers::response_trailers,
    trailers::request_trailers,
    trailers::no_trailer_promise_without_te,
    streaming::sse_flushed,
    streaming::client_gone_cancels_upstream,
    streaming::upstream_dies_mid_body,
    streaming::upstream_timeout_504,
    streaming::timeout_spares_streams,
    streaming::timeout_spares_uploads,
    http2::h2c_prior_knowledge,
    http2::h2_authority_becomes_host,
    http2::h2_cookies_joined,
    http2::h2_many_streams,
    http2::h2_body_1mib,
    http2::h2_trailers_to_client,
    http2::h2_no_connection_headers,
    http2::tls_alpn,
    http2::tls_self_signed,
    http2::upstream_http2_grpc,
    http2::h2_upstream_one_connection,
    http2::h2_upstream_authority,
    http2::h2_upstream_trailers_to_http11,
    http2::h2c_upgrade_not_tunnelled,
    websocket::websocket_echo,
    websocket::upgrade_token_list,
    websocket::websocket_with_upstream_http2,
    websocket::websocket_1mib,
    websocket::websocket_fragmented,
    websocket::websocket_ping_close,
    websocket::upgrade_headers_pass,
    websocket::upgrade_half_close,
    websocket::unasked_101_is_502,
    websocket::wrong_protocol_101_is_502,
    websocket::websocket_over_http2,
    websocket::websocket_chat_room,
    http11::pipelining,
    http11::head_request,
    http11::no_body_statuses,
    http11::expect_100_continue,
    http11::http10_client,
    http11::close_delimited_upstream,
    http11::no_request_smuggling,
    http11::many_keepalive_clients,
    http11::chunked_request_body,
    http11::absolute_form_target,
    on_demand::app_wakes_on_first_request,
    on_demand::one_start_for_many_requests,
    on_demand::browser_gets_a_waiting_page,
    on_demand::browser_alone_wakes_the_app,
    on_demand::start_outlives_its_client,
    on_demand::failed_start_is_503,
    on_demand::idle_app_is_stopped,
    on_demand::activity_keeps_app_awake,
    on_demand::crashed_app_starts_again,
    on_demand::linked_apps_wake_together,
    on_demand::linked_apps_sleep_together,
    on_demand::apps_api_needs_token,
    on_demand::no_orphans_after_sigterm,
    on_demand::unknown_app_is_404,
    on_demand::apps_file_reloads,
    on_demand::discovery_adds_apps,
    on_demand::command_app_started_and_stopped,
    hardened::slowloris_cut_off,
    hardened::graceful_shutdown,
    hardened::connection_limit_waits,
    hardened::request_body_limit_413,
    hardened::broken_request_body_400,
    hardened::keep_alive_apart_from_header_read,
    observed::errors_say_enough,
    observed::access_log_lines,
    observed::client_left_is_499,
    observed::metrics_need_token,
    instances::apps_shared_start_once,
    instances::apps_shared_idle_stop_once,
    instances::apps_shared_redis_down,
    instances::apps_shared_lock_holder_dies,
    instances::apps_shared_websocket_keeps_awake,
    instances::apps_shared_stop_is_no_failed_start,
    complete::config_file_checked,
    complete::config_reload_now_or_at_restart,
    complete::version_flag,
    complete::connect_timeout_502,
    complete::apps_cookies_stay_home,
    complete::config_reload_under_load,
    complete::certificates_by_name,
    complete::upstream_group_round_robin,
    complete::upstream_group_dead_server,
    complete::https_upstream_verified,
    complete::tunnel_idle_closes,
    routing::routes_by_path,
    routing::routes_methods_and_captures,
    routing::routes_host_wildcard,
    routing::routes_accept_order,
    routing::routes_fallback_layer,
    routing::routes_vary_accept,
    routing::routes_header_changes,
    routing::routes_websocket,
    routing::routes_reload_on_change,
    routing::routes_reload_on_sighup,
    routing::routes_invalid_keeps_old,
    routing::routes_check_flag,
    routing::routes_reload_under_load,
];

pub fn find(name: &str) -> Option<&'static Check> {
    ALL.iter().find(|check| check.name == name)
}
