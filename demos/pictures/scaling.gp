# scaling.gp - draws scaling.png from scaling.csv and scaling_measured.csv
# (tests/dist/scaling writes both): gnuplot scaling.gp
set terminal pngcairo size 1100,650 font 'sans,10'
set output 'scaling.png'
set datafile separator ','
set datafile columnheaders
set title "Data-parallel scaling efficiency (weak scaling, batch 256 per node of one core, f32 gradients):\nthe alpha-beta model of ring all-reduce, and 2 ranks measured on this 2-core machine"
set logscale x 2
set xrange [1:300]
set yrange [0:1.05]
set xtics (1, 2, 4, 8, 16, 32, 64, 128, 256)
set ytics 0.1
set grid
set key outside right
set xlabel 'nodes'
set ylabel 'efficiency (1-node step / p-node step)'
c(s) = column(s)
plot 'scaling.csv' using 1:(c('W3 25 Gb/s no overlap')) title 'W3, 25 Gb/s, no overlap' with lines lw 2 dt 2 lc rgb '#1f77b4', \
     'scaling.csv' using 1:(c('W3 25 Gb/s overlap')) title 'W3, 25 Gb/s, overlap' with lines lw 2 lc rgb '#1f77b4', \
     'scaling.csv' using 1:(c('W3 100 Gb/s no overlap')) title 'W3, 100 Gb/s, no overlap' with lines lw 2 dt 2 lc rgb '#ff7f0e', \
     'scaling.csv' using 1:(c('W3 100 Gb/s overlap')) title 'W3, 100 Gb/s, overlap' with lines lw 2 lc rgb '#ff7f0e', \
     'scaling.csv' using 1:(c('10x 25 Gb/s no overlap')) title '10x MLP, 25 Gb/s, no overlap' with lines lw 2 dt 2 lc rgb '#2ca02c', \
     'scaling.csv' using 1:(c('10x 25 Gb/s overlap')) title '10x MLP, 25 Gb/s, overlap' with lines lw 2 lc rgb '#2ca02c', \
     'scaling.csv' using 1:(c('10x 100 Gb/s no overlap')) title '10x MLP, 100 Gb/s, no overlap' with lines lw 2 dt 2 lc rgb '#d62728', \
     'scaling.csv' using 1:(c('10x 100 Gb/s overlap')) title '10x MLP, 100 Gb/s, overlap' with lines lw 2 lc rgb '#d62728', \
     'scaling.csv' using 1:(c('W3 loopback here no overlap')) title 'W3, TCP loopback here, no overlap' with lines lw 2 dt 3 lc rgb '#7f7f7f', \
     'scaling.csv' using 1:(c('10x loopback here no overlap')) title '10x MLP, TCP loopback here, no overlap' with lines lw 2 dt 3 lc rgb '#bcbd22', \
     'scaling_measured.csv' using 2:(strcol(1) eq 'w3' ? $3 : 1/0) title 'measured: W3, 2 ranks x 1 thread vs 1 x 2' with points pt 7 ps 1.8 lc rgb '#1f77b4', \
     'scaling_measured.csv' using 2:(strcol(1) eq 'main' ? $3 : 1/0) title 'measured: main job, 2 x 1 vs 1 x 2' with points pt 5 ps 1.8 lc rgb '#9467bd'
