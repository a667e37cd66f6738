//! Is matching the bottleneck? 10 000 requests against 200 rules, in
//! mu-dispatcher's order (layers × accept groups × rules), timed.
//!
//! `cargo bench -p reverse-proxy-workshop-complete --bench matching`
//! (a plain program, not a test: no timing is ever asserted).

use std::hint::black_box;
use std::time::Instant;

use complete::routing::find_rule;
use http::Request;
use kit::routes_file;

fn main() {
    // 200 rules: hosts, captures, accept groups, a fallback layer at the end.
    let mut toml = String::from(
        "[accept]\njson = [\"application/json\", \"application/vnd.api+json\"]\n\
         html = [\"text/html\", \"application/xhtml+xml\"]\nimage = [\"image/*\"]\n",
    );
    for i in 0..196 {
        let (accept, host) = match i % 4 {
            0 => (
                "accept = [\"json\"]\n",
                format!("host = \"api{i}.example.com\"\n"),
            ),
            1 => (
                "accept = [\"html\"]\n",
                "host = \"*.example.org\"\n".to_string(),
            ),
            2 => ("accept = [\"image\"]\n", String::new()),
            _ => ("", format!("host = \"{{sub}}.svc{i}.internal\"\n")),
        };
        toml.push_str(&format!(
            "[[rules]]\nmethods = [\"GET\", \"POST\"]\n{host}path = \"/service{i}/:id/*rest\"\n\
             {accept}forward = \"http://127.0.0.1:9000/s{i}/{{id}}\"\n"
        ));
    }
    for group in ["json", "html"] {
        toml.push_str(&format!(
            "[[rules]]\nlayer = \"fallback\"\npath = \"/*rest\"\naccept = [\"{group}\"]\n\
             respond = {{ status = 404 }}\n[[rules]]\npath = \"/static/*rest\"\n\
             forward = \"http://127.0.0.1:9000/static\"\n"
        ));
    }
    let routes = routes_file::parse(&toml, "bench.toml").expect("valid rules");
    assert_eq!(routes.rules.len(), 200);

    // 10 000 requests: most match late in the file, some match nothing.
    let accepts = [
        "application/json",
        "text/html,application/xhtml+xml,*/*;q=0.8",
        "image/png;q=0.5, application/json",
        "*/*",
    ];
    let requests: Vec<Request<()>> = (0..10_000)
        .map(|i| {
            let rule = (i * 7) % 200;
            let host = match rule % 4 {
                0 => format!("api{rule}.example.com"),
                1 => "www.example.org".to_string(),
                3 => format!("a.svc{rule}.internal"),
                _ => "localhost".to_string(),
            };
            Request::get(format!("/service{rule}/{i}/a/b?q={i}"))
                .header("host", host)
                .header("accept", accepts[i % accepts.len()])
                .body(())
                .expect("a request")
        })
        .collect();

    let mut matched = 0;
    for request in &requests {
        matched += usize::from(find_rule(&routes, request).is_some());
    }
    let rounds = 5;
    let started = Instant::now();
    for _ in 0..rounds {
        for request in &requests {
            black_box(find_rule(black_box(&routes), black_box(request)).is_some());
        }
    }
    let elapsed = started.elapsed();
    let per_request = elapsed / (rounds * requests.len() as u32);
    println!(
        "{} requests × {rounds} rounds against {} rules: {:.1} ms a round, {:.2} µs a request \
         ({matched} of {} matched a rule)",
        requests.len(),
        routes.rules.len(),
        elapsed.as_secs_f64() * 1000.0 / f64::from(rounds),
        per_request.as_secs_f64() * 1e6,
        requests.len()
    );
}
