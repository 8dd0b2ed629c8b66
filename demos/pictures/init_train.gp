# init_train.gp - draws init_train.png from the CSV beside it: gnuplot init_train.gp
set terminal pngcairo size 900,560 font 'sans,10'
set output 'init_train.png'
set datafile separator ','
set datafile columnheaders
set title 'Initialisation on Fashion-MNIST: 784-100-100-100-100-10 ReLU, SGD lr 0.01'
set xlabel 'iteration'
set ylabel 'training loss (batch cross-entropy, mean over 21 iterations)'
set yrange [0:2.5]
set key top right box opaque
set grid
plot 'init_train.csv' using 1:3 with lines lw 2 title 'std=0.01', \
     'init_train.csv' using 1:5 with lines lw 2 title 'lecun', \
     'init_train.csv' using 1:7 with lines lw 2 title 'he'
