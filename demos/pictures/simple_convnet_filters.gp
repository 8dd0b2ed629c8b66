# simple_convnet_filters.gp - draws simple_convnet_filters.png from the CSV beside it: gnuplot simple_convnet_filters.gp
set terminal pngcairo size 1200,560 font 'sans,10'
set output 'simple_convnet_filters.png'
set datafile separator ','
set datafile columnheaders
set multiplot layout 1,2 title "SimpleConvNet's first layer: 30 filters of 5x5, each shaded from its smallest (white) to its largest weight (black)"
set palette gray negative
unset colorbox
set cbrange [0:1]
set size ratio -1
unset xtics
unset ytics
unset border
set key off
set xrange [-1:35]
set yrange [-29:1]
# filter k at column k % 6, row k / 6, with a pixel of space between
x(k, c) = (int(k) % 6) * 6 + c
y(k, r) = -((int(k) / 6) * 6 + r)
set title 'before training: N(0, 0.01^2), random noise'
plot 'simple_convnet_filters.csv' using ($1 == 0 ? x($2, $4) : NaN):(y($2, $3)):(0.5):(0.5):6 with boxxyerror fillstyle solid noborder fc palette
set title 'after 2 epochs on 60000 images (test accuracy 0.862)'
plot 'simple_convnet_filters.csv' using ($1 == 1 ? x($2, $4) : NaN):(y($2, $3)):(0.5):(0.5):6 with boxxyerror fillstyle solid noborder fc palette
unset multiplot
