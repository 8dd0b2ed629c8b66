# valley.gp - draws valley.png from the CSV beside it: gnuplot valley.gp
set terminal pngcairo size 1000,760 font 'sans,10'
set output 'valley.png'
set datafile separator ','
set datafile columnheaders
f(x, y) = x**2 / 20 + y**2
set xrange [-10:10]
set yrange [-5:5]
set isosamples 120, 120
set contour base
set cntrparam levels discrete 0.25, 1, 2.25, 4, 6.25, 9, 12.25, 16, 20.25, 25
unset clabel
set view map
set key off
set xlabel 'x'
set ylabel 'y'
set label 1 '' at 0, 0, 0 point pt 3 ps 2 lc rgb 'black' front
set multiplot layout 2,2 title 'f(x, y) = x^2/20 + y^2 from (-7, 2), 30 steps; gradients by tg\_backward'
set title 'SGD (lr 0.95)'
splot f(x, y) nosurface lc rgb '#b0b0b0', \
      'valley.csv' using 2:3:(0) nocontours with linespoints lc rgb '#d62728' pt 7 ps 0.6
set title 'Momentum (lr 0.1)'
splot f(x, y) nosurface lc rgb '#b0b0b0', \
      'valley.csv' using 4:5:(0) nocontours with linespoints lc rgb '#d62728' pt 7 ps 0.6
set title 'AdaGrad (lr 1.5)'
splot f(x, y) nosurface lc rgb '#b0b0b0', \
      'valley.csv' using 6:7:(0) nocontours with linespoints lc rgb '#d62728' pt 7 ps 0.6
set title 'Adam (lr 0.3)'
splot f(x, y) nosurface lc rgb '#b0b0b0', \
      'valley.csv' using 8:9:(0) nocontours with linespoints lc rgb '#d62728' pt 7 ps 0.6
unset multiplot
