# batchnorm.gp - draws batchnorm.png from the CSV beside it: gnuplot batchnorm.gp
set terminal pngcairo size 1400,1200 font 'sans,10'
set output 'batchnorm.png'
set datafile separator ','
set datafile columnheaders
set multiplot layout 4,4 title "Train accuracy on 1000 Fashion-MNIST samples, 784-100-100-100-100-100-10 ReLU, SGD lr 0.01, batch 100: with batch norm (solid) and without (dashed)\nA red x marks a net stopped by anomaly mode at its first NaN/Inf"
set xrange [0:20]
set yrange [0:1]
set ytics 0.2
set key off
set title 'weight std 1'
set xlabel ''
set ylabel 'accuracy'
unset label
set label 2 'without BN: NaN/Inf from matmul in epoch 1' at graph 0.04, graph 0.92 tc rgb '#d62728' noenhanced front
plot 'batchnorm.csv' using 1:2 with lines lw 2 lc rgb '#1f77b4', \
     'batchnorm.csv' using 1:3 with lines lw 2 dt 2 lc rgb '#ff7f0e', \
     '+' using (0):(0.1330) every ::0::0 with points pt 2 ps 2.5 lw 2 lc rgb '#d62728'
set title 'weight std 0.541'
set xlabel ''
set ylabel ''
unset label
set label 2 'without BN: NaN/Inf from matmul in epoch 1' at graph 0.04, graph 0.92 tc rgb '#d62728' noenhanced front
plot 'batchnorm.csv' using 1:4 with lines lw 2 lc rgb '#1f77b4', \
     'batchnorm.csv' using 1:5 with lines lw 2 dt 2 lc rgb '#ff7f0e', \
     '+' using (0):(0.1330) every ::0::0 with points pt 2 ps 2.5 lw 2 lc rgb '#d62728'
set title 'weight std 0.293'
set xlabel ''
set ylabel ''
unset label
plot 'batchnorm.csv' using 1:6 with lines lw 2 lc rgb '#1f77b4', \
     'batchnorm.csv' using 1:7 with lines lw 2 dt 2 lc rgb '#ff7f0e'
set title 'weight std 0.158'
set xlabel ''
set ylabel ''
unset label
plot 'batchnorm.csv' using 1:8 with lines lw 2 lc rgb '#1f77b4', \
     'batchnorm.csv' using 1:9 with lines lw 2 dt 2 lc rgb '#ff7f0e'
set title 'weight std 0.0858'
set xlabel ''
set ylabel 'accuracy'
unset label
plot 'batchnorm.csv' using 1:10 with lines lw 2 lc rgb '#1f77b4', \
     'batchnorm.csv' using 1:11 with lines lw 2 dt 2 lc rgb '#ff7f0e'
set title 'weight std 0.0464'
set xlabel ''
set ylabel ''
unset label
plot 'batchnorm.csv' using 1:12 with lines lw 2 lc rgb '#1f77b4', \
     'batchnorm.csv' using 1:13 with lines lw 2 dt 2 lc rgb '#ff7f0e'
set title 'weight std 0.0251'
set xlabel ''
set ylabel ''
unset label
plot 'batchnorm.csv' using 1:14 with lines lw 2 lc rgb '#1f77b4', \
     'batchnorm.csv' using 1:15 with lines lw 2 dt 2 lc rgb '#ff7f0e'
set title 'weight std 0.0136'
set xlabel ''
set ylabel ''
unset label
plot 'batchnorm.csv' using 1:16 with lines lw 2 lc rgb '#1f77b4', \
     'batchnorm.csv' using 1:17 with lines lw 2 dt 2 lc rgb '#ff7f0e'
set title 'weight std 0.00736'
set xlabel ''
set ylabel 'accuracy'
unset label
plot 'batchnorm.csv' using 1:18 with lines lw 2 lc rgb '#1f77b4', \
     'batchnorm.csv' using 1:19 with lines lw 2 dt 2 lc rgb '#ff7f0e'
set title 'weight std 0.00398'
set xlabel ''
set ylabel ''
unset label
plot 'batchnorm.csv' using 1:20 with lines lw 2 lc rgb '#1f77b4', \
     'batchnorm.csv' using 1:21 with lines lw 2 dt 2 lc rgb '#ff7f0e'
set title 'weight std 0.00215'
set xlabel ''
set ylabel ''
unset label
plot 'batchnorm.csv' using 1:22 with lines lw 2 lc rgb '#1f77b4', \
     'batchnorm.csv' using 1:23 with lines lw 2 dt 2 lc rgb '#ff7f0e'
set title 'weight std 0.00117'
set xlabel ''
set ylabel ''
unset label
plot 'batchnorm.csv' using 1:24 with lines lw 2 lc rgb '#1f77b4', \
     'batchnorm.csv' using 1:25 with lines lw 2 dt 2 lc rgb '#ff7f0e'
set title 'weight std 0.000631'
set xlabel 'epochs'
set ylabel 'accuracy'
unset label
plot 'batchnorm.csv' using 1:26 with lines lw 2 lc rgb '#1f77b4', \
     'batchnorm.csv' using 1:27 with lines lw 2 dt 2 lc rgb '#ff7f0e'
set title 'weight std 0.000341'
set xlabel 'epochs'
set ylabel ''
unset label
plot 'batchnorm.csv' using 1:28 with lines lw 2 lc rgb '#1f77b4', \
     'batchnorm.csv' using 1:29 with lines lw 2 dt 2 lc rgb '#ff7f0e'
set title 'weight std 0.000185'
set xlabel 'epochs'
set ylabel ''
unset label
plot 'batchnorm.csv' using 1:30 with lines lw 2 lc rgb '#1f77b4', \
     'batchnorm.csv' using 1:31 with lines lw 2 dt 2 lc rgb '#ff7f0e'
set title 'weight std 0.0001'
set xlabel 'epochs'
set ylabel ''
unset label
plot 'batchnorm.csv' using 1:32 with lines lw 2 lc rgb '#1f77b4', \
     'batchnorm.csv' using 1:33 with lines lw 2 dt 2 lc rgb '#ff7f0e'
unset multiplot
