#!/usr/bin/env bash
# Re-vendor the minimal offline subset of the reveal.js npm package into
# slides/reveal.js/ (see slides/reveal.js/README.md).
#
# Usage: bash slides/update-reveal.sh [VERSION]
#   VERSION defaults to the version recorded in slides/reveal.js/README.md.
#
# Needs: npm and node (registry access), tar, perl, GNU sed and du (Linux).
# Works for the reveal.js 6.x package layout (dist/plugin/*.js, theme fonts
# inlined as data: URIs); 5.x and older use a different layout and are
# rejected by the file checks below.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="$here/reveal.js"

# The subset we vendor, as paths relative to the package root.
THEME=white          # readable light theme; Source Sans Pro is inlined in the CSS
CODE_THEME=monokai   # highlight.js colour theme
FILES=(
	LICENSE
	dist/reveal.js
	dist/reveal.css
	dist/reset.css
	"dist/theme/$THEME.css"
	css/theme/fonts/source-sans-pro/LICENSE
	dist/plugin/markdown.js
	dist/plugin/highlight.js
	"dist/plugin/highlight/$CODE_THEME.css"
	dist/plugin/notes.js
)

default_version() {
	local v=""
	if [[ -f "$dest/README.md" ]]; then
		v="$(sed -n 's/^- Version: `\([^`]*\)`.*/\1/p' "$dest/README.md" | head -n1)"
	fi
	echo "${v:-6.0.2}"
}

version="${1:-$(default_version)}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "Fetching reveal.js@$version ..." >&2
(cd "$tmp" && npm pack --silent "reveal.js@$version" >/dev/null)
tarball=("$tmp"/reveal.js-*.tgz)
[[ -f "${tarball[0]}" ]] || { echo "npm pack produced no tarball" >&2; exit 1; }
tar -xzf "${tarball[0]}" -C "$tmp"
pkg="$tmp/package"

got="$(node -p 'require(process.argv[1]).version' "$pkg/package.json")"
[[ "$got" == "$version" ]] || { echo "asked for $version, got $got" >&2; exit 1; }

for f in "${FILES[@]}"; do
	[[ -f "$pkg/$f" ]] || { echo "missing in package: $f (layout changed?)" >&2; exit 1; }
done

# The scripts must be classic-script (UMD) builds defining window globals:
# ES modules do not load from file:// in Chromium.
check_umd() {
	head -c 2000 "$pkg/$1" | grep -q "\.$2=t()" ||
		{ echo "$1 is not a UMD build defining $2" >&2; exit 1; }
}
check_umd dist/reveal.js Reveal
check_umd dist/plugin/markdown.js RevealMarkdown
check_umd dist/plugin/highlight.js RevealHighlight
check_umd dist/plugin/notes.js RevealNotes

# Stage the subset, keeping the package's relative paths.
stage="$tmp/stage"
for f in "${FILES[@]}"; do
	mkdir -p "$stage/$(dirname "$f")"
	cp "$pkg/$f" "$stage/$f"
done

# Edit: drop remote @imports (e.g. Google Fonts) from the stylesheets so that no
# request leaves the machine; the theme then falls back to its local/inlined
# fonts. (A no-op for white.css in 6.0.2, which inlines its font as data: URIs.)
for css in "$stage"/dist/theme/*.css "$stage"/dist/plugin/highlight/*.css "$stage"/dist/reveal.css "$stage"/dist/reset.css; do
	perl -0pi -e 's{\@import\s+(?:url\(\s*)?["\x27]?(?:https?:)?//[^;]*;\s*}{}g' "$css"
done

# Check: nothing in the stylesheets may point at the network.
if grep -EnHo '(@import|url\()[[:space:]]*["\x27]?(https?:)?//[^)";]{0,80}' \
	$(find "$stage" -name '*.css'); then
	echo "remote reference left in a stylesheet (see above)" >&2
	exit 1
fi

# Replace the vendored copy (README.md is hand-written and kept; its version line
# is updated).
rm -rf "$dest/dist" "$dest/css" "$dest/LICENSE"
mkdir -p "$dest"
cp -R "$stage"/. "$dest"/
if [[ -f "$dest/README.md" ]]; then
	sed -i "s/^- Version: \`[^\`]*\`/- Version: \`$version\`/" "$dest/README.md"
fi

echo "Vendored reveal.js $version into $dest:" >&2
(cd "$dest" && find . -type f ! -name README.md | sort | xargs du -b) >&2
du -sb "$dest" >&2

# The code font, so that code looks (and fits) the same on every laptop:
# Source Code Pro (OFL), latin subset, regular and bold, from @fontsource.
FONT_VERSION=5.3.1
font_dest="$here/fonts/source-code-pro"
(cd "$tmp" && npm pack --silent "@fontsource/source-code-pro@$FONT_VERSION" >/dev/null)
mkdir -p "$tmp/font" && tar -xzf "$tmp"/fontsource-source-code-pro-*.tgz -C "$tmp/font"
rm -rf "$font_dest" && mkdir -p "$font_dest"
for weight in 400 700; do
	cp "$tmp/font/package/files/source-code-pro-latin-$weight-normal.woff2" "$font_dest/"
done
cp "$tmp/font/package/LICENSE" "$font_dest/"
echo "Vendored @fontsource/source-code-pro $FONT_VERSION into $font_dest" >&2
