set terminal png size 1200,500
set output 'docs/failover-stop.png'
set multiplot layout 1,2
set title 'Request latency around one failover (stop)'
set xlabel 'completion time, ms after the failure'
set ylabel 'request latency, ms'
set logscale y
plot 'docs/failover-stop.png.data.timeline' using 1:2 with points pt 7 ps 0.4 title 'request'
unset logscale y
set title 'Stall seen by the application, 20 trials'
set xlabel 'percent of trials'
set ylabel 'stall, ms'
plot 'docs/failover-stop.png.data.stalls' using 1:2 with linespoints pt 7 title 'stall (sorted)'
unset multiplot
