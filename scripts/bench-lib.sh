# Shared by the scripts/bench*.sh scripts (sourced, not run).

# bench_doc_section DOC HEADING SECTION_FILE: put SECTION_FILE (which starts with HEADING) in place of
# DOC's section under HEADING, up to the next "## " heading, or append it when DOC has none; one blank
# line is kept before the heading that follows. Creates DOC when missing.
bench_doc_section() {
  local doc=$1 heading=$2 section=$3
  [ -f "$doc" ] || printf '# Benchmarks\n' >"$doc"
  awk -v heading="$heading" -v secfile="$section" '
    function emit(   line) { while ((getline line < secfile) > 0) { print line; last = line } close(secfile); done = 1 }
    $0 == heading { emit(); skip = 1; next }
    skip && /^## / { skip = 0; if (last != "") print "" }
    !skip { print }
    END { if (!done) { print ""; emit() } }
  ' "$doc" >"$doc.new" && cat "$doc.new" >"$doc"
  rm -f "$doc.new"
}
