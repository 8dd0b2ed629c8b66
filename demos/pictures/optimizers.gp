# optimizers.gp - draws optimizers.png from the CSV beside it: gnuplot optimizers.gp
set terminal pngcairo size 900,560 font 'sans,10'
set output 'optimizers.png'
set datafile separator ','
set datafile columnheaders
set title 'Optimizers on Fashion-MNIST: 784-100-100-100-100-10 ReLU, He init, batch 128'
set xlabel 'iteration'
set ylabel 'training loss (batch cross-entropy, mean over 21 iterations)'
set yrange [0:2.5]
set key top right box opaque
set grid
plot 'optimizers.csv' using 1:3 with lines lw 2 title 'sgd', \
     'optimizers.csv' using 1:5 with lines lw 2 title 'momentum', \
     'optimizers.csv' using 1:7 with lines lw 2 title 'adagrad', \
     'optimizers.csv' using 1:9 with lines lw 2 title 'adam'
