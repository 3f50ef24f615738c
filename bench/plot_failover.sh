#!/bin/sh
# Draws the plot of `viaduct bench failover` from its JSON, so that a run can be re-drawn (or
# compared) later without running it again:
#   bench/plot_failover.sh RESULT.json OUT.png
# Left: the latency of every request around the first trial's failure; right: the stall the
# application saw in each trial, sorted. Needs jq and gnuplot.
set -eu
if [ $# -ne 2 ]; then
  echo "usage: $0 RESULT.json OUT.png" >&2
  exit 2
fi
json=$1
png=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
jq -e '.stall.all_ms and .timeline_first_trial' "$json" >/dev/null ||
  { echo "$0: $json has no stall.all_ms or timeline_first_trial (not a bench failover result?)" >&2; exit 1; }
jq -r '.timeline_first_trial[] | "\(.[0]) \(.[1])"' "$json" >"$tmp/timeline"
jq -r '.stall.all_ms | sort | . as $v | range(0; length) | "\((. + 1) * 100 / ($v | length)) \($v[.])"' \
  "$json" >"$tmp/stalls"
mode=$(jq -r '.mode' "$json")
trials=$(jq -r '.trials' "$json")
gnuplot <<GP
set terminal png size 1200,500
set output '$png'
set multiplot layout 1,2
set title 'Request latency around one failover ($mode)'
set xlabel 'completion time, ms after the failure'
set ylabel 'request latency, ms'
set logscale y
plot '$tmp/timeline' using 1:2 with points pt 7 ps 0.4 title 'request'
unset logscale y
set title 'Stall seen by the application, $trials trials'
set xlabel 'percent of trials'
set ylabel 'stall, ms'
plot '$tmp/stalls' using 1:2 with linespoints pt 7 title 'stall (sorted)'
unset multiplot
GP
