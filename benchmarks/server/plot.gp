# CREATE p50 and p95 of anweddol-server and the reference, per phase.
#   gnuplot -e "summary='server-summary.csv'; output='server.png'; machine='...'" plot.gp
set datafile separator ','
set terminal pngcairo size 800,480 font ',11'
set output output
set title sprintf("REST CREATE until the credentials arrive\n%s", machine)
set ylabel 'CREATE time (s)'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set key top left
set grid ytics
set yrange [0:*]
plot summary using 2:xtic(1) skip 1 title 'p50', \
     summary using 3 skip 1 title 'p95'
