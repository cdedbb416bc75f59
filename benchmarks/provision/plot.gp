# Makespan to "administered" against the number of containers, per boot
# admission policy (median of the runs, bars from the fastest to the
# slowest), with each N's floor: N x the CPU a boot costs alone / cores.
#   gnuplot -e "summary='provision-summary.csv'; output='provision.png'; machine='...'" plot.gp
set datafile separator ','
set datafile columnheaders
set terminal pngcairo size 900,540 font ',11'
set output output
set title sprintf("Time until N containers are administered\n%s", machine)
set xlabel 'containers provisioned at once (N)'
set ylabel 'makespan (s)'
set key top left
set grid ytics
set xtics (1, 2, 4, 8)
set logscale x 2
set xrange [0.8:10]
m(name) = column(name)
plot summary using 1:(m('cpu-heavy')):(m('cpu-heavy_min')):(m('cpu-heavy_max')) \
       with yerrorlines lw 2 pt 7 title 'cpu-heavy: CPU count, while CPU-heavy', \
     summary using 1:(m('cpu-limit')):(m('cpu-limit_min')):(m('cpu-limit_max')) \
       with yerrorlines lw 2 pt 5 title 'cpu-limit: CPU count, until the address', \
     summary using 1:(m('unbounded')):(m('unbounded_min')):(m('unbounded_max')) \
       with yerrorlines lw 2 pt 9 title 'no boot limit', \
     summary using 1:(m('memory')):(m('memory_min')):(m('memory_max')) \
       with yerrorlines lw 1 dt 2 pt 4 title 'memory: by available memory', \
     summary using 1:(m('sequential')):(m('sequential_min')):(m('sequential_max')) \
       with yerrorlines lw 2 pt 11 title 'one after another', \
     summary using 1:'floor' with lines lw 1 dt 3 lc rgb 'black' title 'floor: N x CPU per boot / cores'
