//! The talk as a reveal.js presentation, made from `slides/NN_name.md`.
//!
//! Not a lesson of the workshop: the kit that presents it. The decks are
//! reveal.js markdown (`***` next slide, `**` slide below, `Note:` speaker
//! notes) whose code comes from the sources by anchor,
//! `{{#include ../solutions/03_stream_body.rs:stream}}`, never pasted. This
//! module expands those includes from the current sources on every request
//! (an edit to a solution shows on reload), inlines each deck into its page
//! (from `file://`, a browser loads scripts and styles but lets no script
//! fetch a file, so reveal.js could not fetch a separate `.md`: a static
//! export works because nothing is fetched), and serves reveal.js from the
//! repository's own copy in `slides/reveal.js/`: a talk must not depend on
//! the conference Wi-Fi.
//!
//! Served by `cargo run --bin slides` and by the demo origin under
//! `/slides/`, so the closing demo can show the talk through the proxy.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use http::{Response, StatusCode, header};

use crate::body::{Body, full, text};

/// One deck: `slides/03_stream_body.md`.
#[derive(Debug, Clone)]
pub struct Deck {
    /// `03_stream_body`: the page is `03_stream_body.html`.
    pub name: String,
    /// `03`.
    pub step: String,
    /// Its first `# ` heading, like `Step 03 — Stream the body`.
    pub title: String,
    /// The markdown, includes not expanded.
    pub markdown: String,
}

/// Every `slides/NN_*.md`, in step order.
pub fn decks(root: &Path) -> io::Result<Vec<Deck>> {
    let mut decks = Vec::new();
    for entry in fs::read_dir(root.join("slides"))? {
        let path = entry?.path();
        let Some(name) = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(".md"))
        else {
            continue;
        };
        // `NN_name`: two digits, an underscore (other files are not decks).
        let (Some(step), Some(rest)) = (name.get(..2), name.get(2..)) else {
            continue;
        };
        if !step.bytes().all(|b| b.is_ascii_digit()) || !rest.starts_with('_') {
            continue;
        }
        let markdown = fs::read_to_string(&path)?;
        let title = markdown
            .lines()
            .find_map(|line| line.strip_prefix("# "))
            .unwrap_or(name)
            .trim()
            .to_string();
        decks.push(Deck {
            name: name.to_string(),
            step: step.to_string(),
            title,
            markdown,
        });
    }
    decks.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(decks)
}

// --- includes ----------------------------------------------------------------

/// Replaces every `{{#include PATH[:ANCHOR]}}` of a deck with the code it
/// names, ready to show: anchor and exercise marker lines removed, common
/// indentation stripped. `PATH` is relative to `deck_dir`, read through
/// `read_file`.
pub fn expand_includes(
    markdown: &str,
    deck_dir: &Path,
    read_file: &dyn Fn(&Path) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(markdown.len());
    for (index, line) in markdown.split_inclusive('\n').enumerate() {
        let mut rest = line;
        for include in find_includes(line) {
            // Includes come in order, each after the previous one's end.
            let offset = line.len() - rest.len();
            out.push_str(&rest[..include.start - offset]);
            let code = resolve_include(&include, deck_dir, read_file)
                .map_err(|err| format!("line {}: {err}", index + 1))?;
            out.push_str(&code);
            rest = &line[include.end..];
        }
        out.push_str(rest);
    }
    Ok(out)
}

/// One `{{#include PATH[:ANCHOR]}}` in a line, with its byte range.
pub struct Include<'a> {
    pub start: usize,
    pub end: usize,
    pub path: &'a str,
    pub anchor: Option<&'a str>,
}

/// The includes of one line, in order.
pub fn find_includes(line: &str) -> Vec<Include<'_>> {
    const OPEN: &str = "{{#include";
    let mut includes = Vec::new();
    let mut from = 0;
    while let Some(found) = line[from..].find(OPEN) {
        let start = from + found;
        let Some(length) = line[start..].find("}}") else {
            break;
        };
        let end = start + length + 2;
        let target = line[start + OPEN.len()..end - 2].trim();
        let (path, anchor) = match target.split_once(':') {
            Some((path, anchor)) => (path.trim(), Some(anchor.trim())),
            None => (target, None),
        };
        includes.push(Include {
            start,
            end,
            path,
            anchor,
        });
        from = end;
    }
    includes
}

/// The code an include shows, or why it cannot be found.
pub fn resolve_include(
    include: &Include,
    deck_dir: &Path,
    read_file: &dyn Fn(&Path) -> Option<String>,
) -> Result<String, String> {
    let directive = match include.anchor {
        Some(anchor) => format!("{{{{#include {}:{anchor}}}}}", include.path),
        None => format!("{{{{#include {}}}}}", include.path),
    };
    let path = deck_dir.join(include.path);
    let text =
        read_file(&path).ok_or_else(|| format!("{directive}: cannot read {}", path.display()))?;
    let lines = match include.anchor {
        Some(anchor) => {
            anchored_lines(&text, anchor).map_err(|err| format!("{directive}: {err}"))?
        }
        None => text.lines().collect(),
    };
    Ok(clean_code(&lines))
}

/// The lines between `ANCHOR: name` and `ANCHOR_END: name` (exact name). As in
/// mdBook, an anchor may open and close several times: the parts are joined.
fn anchored_lines<'a>(text: &'a str, anchor: &str) -> Result<Vec<&'a str>, String> {
    let mut lines = Vec::new();
    let mut opened_at: Option<usize> = None;
    let mut found = false;
    for (index, line) in text.lines().enumerate() {
        if marker_name(line, "ANCHOR_END:") == Some(anchor) {
            if opened_at.take().is_none() {
                return Err(format!(
                    "line {}: ANCHOR_END: {anchor} before its ANCHOR",
                    index + 1
                ));
            }
        } else if marker_name(line, "ANCHOR:") == Some(anchor) {
            if opened_at.is_some() {
                return Err(format!("line {}: ANCHOR: {anchor} opened twice", index + 1));
            }
            opened_at = Some(index + 1);
            found = true;
        } else if opened_at.is_some() {
            lines.push(line);
        }
    }
    match opened_at {
        Some(line) => Err(format!(
            "line {line}: ANCHOR: {anchor} is never closed (ANCHOR_END: {anchor})"
        )),
        None if !found => Err(format!("no line with `ANCHOR: {anchor}`")),
        None => Ok(lines),
    }
}

/// The name after `marker` (`ANCHOR:` or `ANCHOR_END:`) in a line, if any.
fn marker_name<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let (_, rest) = line.split_once(marker)?;
    rest.split_whitespace().next()
}

/// Code as a slide shows it: without anchor and exercise marker lines (they
/// are plumbing: `// EXERCISE:` and `// END EXERCISE` are the generator's),
/// dedented so that a method's body starts at the margin.
fn clean_code(lines: &[&str]) -> String {
    let shown: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|line| {
            !["ANCHOR:", "ANCHOR_END:", "// EXERCISE:", "// END EXERCISE"]
                .iter()
                .any(|marker| line.contains(marker))
        })
        .collect();
    let indent = shown
        .iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.len() - line.trim_start().len())
        .min()
        .unwrap_or(0);
    shown
        .iter()
        .map(|line| line.get(indent..).unwrap_or("").trim_end())
        .collect::<Vec<_>>()
        .join("\n")
}

// --- pages -------------------------------------------------------------------

/// The whole talk: a title, the agenda, then every deck, one after the other.
pub fn talk_page(root: &Path) -> io::Result<String> {
    let decks = decks(root)?;
    let mut sections = String::new();
    sections.push_str(
        r#"<section id="title">
<h1>Write a reverse proxy in Rust</h1>
<p>one runnable step at a time, after « Écrire un reverse-proxy avec Go en 30 minutes »</p>
<p class="keys">→ next · ↓ below · <kbd>S</kbd> speaker notes · <kbd>Esc</kbd> overview · <code>?print-pdf</code> to print</p>
<aside class="notes">Each step is one command: cargo run --bin NN-name. The code on the slides comes from the sources.</aside>
</section>
<section id="agenda">
<h2>The steps</h2>
<ol class="agenda">
"#,
    );
    for deck in &decks {
        let short = deck
            .title
            .split_once(" — ")
            .map_or(deck.title.as_str(), |(_, rest)| rest);
        let _ = writeln!(
            sections,
            r##"<li><a href="#/step-{}">{} · {}</a></li>"##,
            deck.step,
            deck.step,
            escape_html(short)
        );
    }
    sections.push_str(
        "</ol>\n<aside class=\"notes\">One step a section: run it, read its code, try the exercise.</aside>\n</section>\n",
    );
    for deck in &decks {
        sections.push_str(&deck_section(root, deck));
    }
    Ok(page("Write a reverse proxy in Rust", &sections))
}

/// One deck alone: `03_stream_body.html`. `None` if there is no such deck.
pub fn deck_page(root: &Path, name: &str) -> io::Result<Option<String>> {
    let decks = decks(root)?;
    Ok(decks
        .iter()
        .find(|deck| deck.name == name)
        .map(|deck| page(&deck.title, &deck_section(root, deck))))
}

/// A deck as a reveal.js markdown section, includes expanded. A deck whose
/// includes do not resolve becomes one slide that says why (a speaker on
/// stage gets a visible error, not a blank page; the browser test fails on
/// the raw `{{#include` it quotes).
fn deck_section(root: &Path, deck: &Deck) -> String {
    let deck_dir = root.join("slides");
    let read_file = |path: &Path| fs::read_to_string(path).ok();
    let markdown = match expand_includes(&deck.markdown, &deck_dir, &read_file) {
        Ok(markdown) => markdown,
        Err(err) => {
            tracing::warn!("slides/{}.md: {err}", deck.name);
            format!(
                "## slides/{}.md cannot be shown\n\n```text\n{err}\n```\n\nNote: fix the include, then reload.\n",
                deck.name
            )
        }
    };
    // The first slide of each deck gets an id the agenda links to.
    format!(
        "<section data-markdown data-separator=\"^\\*\\*\\*$\" data-separator-vertical=\"^\\*\\*$\" \
         data-separator-notes=\"^Note:\">\n<textarea data-template>\n{}\n{}</textarea>\n</section>\n",
        escape_html(&format!("<!-- .slide: id=\"step-{}\" -->", deck.step)),
        escape_html(&markdown)
    )
}

/// The reveal.js page around `sections`. Every URL is relative, so the
/// page works under any prefix (`/slides/` on the origin) and from a folder.
fn page(title: &str, sections: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="reveal.js/dist/reset.css">
<link rel="stylesheet" href="reveal.js/dist/reveal.css">
<link rel="stylesheet" href="reveal.js/dist/theme/white.css">
<link rel="stylesheet" href="reveal.js/dist/plugin/highlight/monokai.css">
<link rel="stylesheet" href="workshop.css">
<link rel="icon" href="data:,">
</head>
<body>
<div class="reveal"><div class="slides">
{sections}</div></div>
<script src="reveal.js/dist/reveal.js"></script>
<script src="reveal.js/dist/plugin/markdown.js"></script>
<script src="reveal.js/dist/plugin/highlight.js"></script>
<script src="reveal.js/dist/plugin/notes.js"></script>
<script>
Reveal.initialize({{
  hash: true,
  width: 1280,
  height: 720,
  margin: 0.04,
  slideNumber: "c/t",
  plugins: [RevealMarkdown, RevealHighlight, RevealNotes],
}});
</script>
</body>
</html>
"#,
        title = escape_html(title)
    )
}

/// Text safe inside an element or a `<textarea>` (whose content the
/// browser decodes before the markdown plugin reads it).
fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

// --- files -------------------------------------------------------------------

/// The files a page loads besides itself, below `slides/`: reveal.js's own
/// copy, the code font and the workshop's stylesheet. `None` for anything else (no path
/// leaves `slides/`).
pub fn asset_path(root: &Path, path: &str) -> Option<PathBuf> {
    let relative = Path::new(path);
    let plain = relative
        .components()
        .all(|component| matches!(component, Component::Normal(_)));
    let allowed =
        path == "workshop.css" || path.starts_with("reveal.js/") || path.starts_with("fonts/");
    (plain && allowed).then(|| root.join("slides").join(relative))
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("woff2") => "font/woff2",
        Some("woff") => "font/woff",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

/// Answers `path` (relative to where the talk is served, without the
/// leading slash): `""` or `index.html` is the talk, `NN_name.html` one deck,
/// anything else a file of `slides/reveal.js/` or `slides/workshop.css`.
pub fn respond(root: &Path, path: &str) -> Response<Body> {
    let html = |page: String| {
        let mut response = Response::new(full(page));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/html; charset=utf-8"),
        );
        // Pages are made from the sources on every request: never cached.
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-cache"),
        );
        response
    };
    let unreadable = |err: io::Error| {
        text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read {}: {err}", root.join("slides").display()),
        )
    };
    if path.is_empty() || path == "index.html" {
        return talk_page(root).map_or_else(unreadable, html);
    }
    if let Some(name) = path.strip_suffix(".html") {
        return match deck_page(root, name) {
            Ok(Some(page)) => html(page),
            Ok(None) => text(
                StatusCode::NOT_FOUND,
                format!("there is no slides/{name}.md"),
            ),
            Err(err) => unreadable(err),
        };
    }
    let Some(file) = asset_path(root, path) else {
        return text(StatusCode::NOT_FOUND, format!("no {path} here"));
    };
    match fs::read(&file) {
        Ok(bytes) => {
            let mut response = Response::new(full(bytes));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(content_type(path)),
            );
            response
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            text(StatusCode::NOT_FOUND, format!("no {path} here"))
        }
        Err(err) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read {}: {err}", file.display()),
        ),
    }
}

/// Writes the talk as static files into `dir`: `index.html`, one page per
/// deck, and the files they load (files already there are overwritten,
/// others left alone). Returns how many files were written.
pub fn export(root: &Path, dir: &Path) -> io::Result<usize> {
    let mut written = 0;
    let mut write = |relative: &Path, bytes: &[u8]| -> io::Result<()> {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(path, bytes)?;
        written += 1;
        Ok(())
    };
    write(Path::new("index.html"), talk_page(root)?.as_bytes())?;
    for deck in decks(root)? {
        if let Some(page) = deck_page(root, &deck.name)? {
            write(Path::new(&format!("{}.html", deck.name)), page.as_bytes())?;
        }
    }
    let slides = root.join("slides");
    write(
        Path::new("workshop.css"),
        &fs::read(slides.join("workshop.css"))?,
    )?;
    let mut folders = vec![slides.join("reveal.js"), slides.join("fonts")];
    while let Some(folder) = folders.pop() {
        for entry in fs::read_dir(&folder)? {
            let path = entry?.path();
            if path.is_dir() {
                folders.push(path);
            } else if let Ok(relative) = path.strip_prefix(&slides) {
                write(relative, &fs::read(&path)?)?;
            }
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODE: &str = "\
fn outside() {}
// ANCHOR: body
impl X {
    // ANCHOR: inner
    fn f() {
        // EXERCISE: hint
        work();
        // END EXERCISE
    }
    // ANCHOR_END: inner
}
// ANCHOR_END: body
";

    fn files(path: &Path) -> Option<String> {
        (path == Path::new("slides/../solutions/01_x.rs")).then(|| CODE.to_string())
    }

    #[test]
    fn includes_expand_to_clean_code() {
        let deck = "a\n  {{#include ../solutions/01_x.rs:inner}}\nb {{#include ../solutions/01_x.rs:body}} c\n";
        let expanded = expand_includes(deck, Path::new("slides"), &files).unwrap();
        assert_eq!(
            expanded,
            "a\n  fn f() {\n    work();\n}\nb impl X {\n    fn f() {\n        work();\n    }\n} c\n"
        );
        let err = expand_includes("{{#include x.rs}}", Path::new("slides"), &files).unwrap_err();
        assert!(
            err.starts_with("line 1: {{#include x.rs}}: cannot read"),
            "{err}"
        );
    }

    #[test]
    fn assets_stay_below_slides() {
        let root = Path::new("/repo");
        assert_eq!(
            asset_path(root, "reveal.js/dist/reveal.js"),
            Some(PathBuf::from("/repo/slides/reveal.js/dist/reveal.js"))
        );
        assert!(asset_path(root, "workshop.css").is_some());
        for outside in [
            "reveal.js/../../Cargo.toml",
            "/etc/passwd",
            "01_listen_and_serve.md",
        ] {
            assert_eq!(asset_path(root, outside), None, "{outside}");
        }
    }

    #[test]
    fn markdown_is_escaped_for_the_textarea() {
        assert_eq!(
            escape_html("a < b && </textarea>"),
            "a &lt; b &amp;&amp; &lt;/textarea&gt;"
        );
    }
}
