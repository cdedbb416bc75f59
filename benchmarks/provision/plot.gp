# Makespan to "administered" against the number of containers, per mode.
#   gnuplot -e "summary='provision-summary.csv'; output='provision.png'; machine='...'" plot.gp
set datafile separator ','
set terminal pngcairo size 800,480 font ',11'
set output output
set title sprintf("Time until N containers are administered\n%s", machine)
set xlabel 'containers provisioned at once (N)'
set ylabel 'makespan (s)'
set key top left
set grid ytics
set xtics (1, 2, 4, 8)
set logscale x 2
plot summary using 1:2 skip 1 with linespoints lw 2 pt 7 title 'default boot admission', \
     summary using 1:3 skip 1 with linespoints lw 2 pt 5 title 'no boot limit', \
     summary using 1:4 skip 1 with linespoints lw 2 pt 9 title 'one after another'
