# Request-to-credentials latency, p50 and p95, per mode.
#   gnuplot -e "summary='latency-summary.csv'; output='latency.png'; machine='...'" plot.gp
set datafile separator ','
set terminal pngcairo size 800,480 font ',11'
set output output
set title sprintf("POST /containers until the credentials arrive\n%s", machine)
set ylabel 'latency (s)'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set key top right
set grid ytics
set yrange [0:*]
plot summary using 2:xtic(1) skip 1 title 'p50', \
     summary using 3 skip 1 title 'p95'
