# overfit.gp - draws overfit.png from the CSV beside it: gnuplot overfit.gp
set terminal pngcairo size 1400,480 font 'sans,10'
set output 'overfit.png'
set datafile separator ','
set datafile columnheaders
set multiplot layout 1,3 title '300 Fashion-MNIST training samples, 784-100-100-100-100-100-100-10 ReLU, SGD lr 0.01, batch 100; test: 10000 samples'
set xrange [0:200]
set yrange [0:1.02]
set xlabel 'epochs'
set ylabel 'accuracy'
set key bottom right
set grid
set title 'no regularisation: final gap 0.244'
plot 'overfit.csv' using 1:2 with lines lw 2 lc rgb '#1f77b4' title 'train', \
     'overfit.csv' using 1:3 with lines lw 2 lc rgb '#ff7f0e' title 'test'
set title 'weight decay, lambda 0.1: final gap 0.108'
plot 'overfit.csv' using 1:4 with lines lw 2 lc rgb '#1f77b4' title 'train', \
     'overfit.csv' using 1:5 with lines lw 2 lc rgb '#ff7f0e' title 'test'
set title 'dropout, p 0.2: final gap 0.071'
plot 'overfit.csv' using 1:6 with lines lw 2 lc rgb '#1f77b4' title 'train', \
     'overfit.csv' using 1:7 with lines lw 2 lc rgb '#ff7f0e' title 'test'
unset multiplot
