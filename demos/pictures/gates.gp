# gates.gp - draws gates.png from the CSV beside it: gnuplot gates.gp
set terminal pngcairo size 1350,430 font 'sans,10'
set output 'gates.png'
set datafile separator ','
set datafile columnheaders
$xor << EOD
x1,x2,xor
0,0,0
1,1,0
1,0,1
0,1,1
EOD
set multiplot layout 1,3 title 'XOR learned with tg\_backward: binary cross-entropy, Adam lr 0.1, 2000 steps, best of 10 starts; filled dots: XOR = 1'
set xrange [-0.25:1.25]
set yrange [-0.25:1.25]
set size ratio -1
set cbrange [0:1]
set palette defined (0 '#2166ac', 0.5 '#f7f7f7', 1 '#b2182b')
set xlabel 'x1'
set ylabel 'x2'
set key off
set title "one layer (2-1): sigmoid(w.x + b)\nsolved in 0 of 10 starts"
plot 'xor_grid.csv' using 1:2:3 with image, \
     $xor using 1:2:($3 > 0.5 ? 7 : 6) with points pt variable ps 2.5 lc rgb 'black'
set title "two layers (2-2-1), sigmoid hidden layer\nsolved in 5 of 10 starts"
plot 'xor_grid.csv' using 1:2:4 with image, \
     $xor using 1:2:($3 > 0.5 ? 7 : 6) with points pt variable ps 2.5 lc rgb 'black'
set size noratio
unset colorbox
set autoscale
set yrange [0:*]
set xlabel 'step'
set ylabel 'binary cross-entropy'
set key center right
set title 'loss of the best start (ln 2 = 0.693: 0.5 everywhere)'
plot 'xor_loss.csv' using 1:2 with lines lw 2 title 'one layer (2-1)', \
     'xor_loss.csv' using 1:3 with lines lw 2 title 'two layers (2-2-1)', \
     log(2) with lines dt 2 lc rgb 'gray' title 'ln 2'
unset multiplot
