# hyper_search.gp - draws hyper_search.png from the CSV beside it: gnuplot hyper_search.gp
set terminal pngcairo size 1400,560 font 'sans,10'
set output 'hyper_search.png'
set datafile separator ','
set datafile columnheaders
set multiplot layout 1,2 title "Random search, 100 trials: 500 Fashion-MNIST samples (100 held out), 784-100-100-100-100-100-100-10 ReLU, SGD, 50 epochs\nlr = 10^U(-6, -2), weight decay = 10^U(-8, -4); circled: the best 5"
set logscale x
set format x '10^{%L}'
set grid
set key off
set xrange [10**-6:10**-2]
set title 'validation accuracy over (lr, weight decay)'
set xlabel 'learning rate'
set ylabel 'weight decay'
set logscale y
set format y '10^{%L}'
set yrange [10**-8:10**-4]
set cbrange [0:1]
set cblabel 'validation accuracy'
set palette defined (0 '#440154', 0.25 '#3b528b', 0.5 '#21918c', 0.75 '#5ec962', 1 '#fde725')
plot 'hyper_search.csv' using 3:4:5 with points pt 7 ps 1.6 palette, \
     'hyper_search.csv' every ::0::4 using 3:4 with points pt 6 ps 3 lw 2 lc rgb 'red'
unset logscale y
set format y '%g'
set yrange [0:1]
set ylabel 'validation accuracy'
set title 'validation accuracy over lr (colour: weight decay, log10)'
set cbrange [-8:-4]
set cblabel 'log10 weight decay'
plot 'hyper_search.csv' using 3:5:(log10($4)) with points pt 7 ps 1.4 palette, \
     'hyper_search.csv' every ::0::4 using 3:5 with points pt 6 ps 3 lw 2 lc rgb 'red'
unset multiplot
