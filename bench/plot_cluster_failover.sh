#!/bin/sh
# Draws the plot of `viaduct bench cluster-failover` from its JSON:
#   bench/plot_cluster_failover.sh RESULT.json OUT.png
# Left: the latency of every operation around the first trial's fault; right: per trial, sorted,
# the client's stall and the master's first report -> every group member notified. Needs jq and
# gnuplot.
set -eu
if [ $# -ne 2 ]; then
  echo "usage: $0 RESULT.json OUT.png" >&2
  exit 2
fi
json=$1
png=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
jq -e '.stall_ms.all and .report_to_notified_ms.all and .timeline_first_trial' "$json" >/dev/null ||
  { echo "$0: $json is not a bench cluster-failover result" >&2; exit 1; }
jq -r '.timeline_first_trial[] | "\(.[0]) \(.[1])"' "$json" >"$tmp/timeline"
for k in stall_ms report_to_notified_ms; do
  jq -r ".$k.all | sort | . as \$v | range(0; length) | \"\((. + 1) * 100 / (\$v | length)) \(\$v[.])\"" \
    "$json" >"$tmp/$k"
done
kind=$(jq -r '.kind' "$json")
trials=$(jq -r '.trials' "$json")
gnuplot <<GP
set terminal png size 1200,500
set output '$png'
set multiplot layout 1,2
set title 'Operation latency around one fault ($kind of a data server)'
set xlabel 'completion time, ms after the fault'
set ylabel 'operation latency, ms'
set logscale y
plot '$tmp/timeline' using 1:2 with points pt 7 ps 0.4 title 'operation'
set title '$trials trials ($kind)'
set xlabel 'percent of trials'
set ylabel 'ms'
plot '$tmp/stall_ms' using 1:2 with linespoints pt 7 title 'client stall', \
     '$tmp/report_to_notified_ms' using 1:2 with linespoints pt 5 title 'first report -> group notified'
unset multiplot
GP
