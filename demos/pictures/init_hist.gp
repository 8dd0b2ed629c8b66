# init_hist.gp - draws init_hist.png from the CSV beside it: gnuplot init_hist.gp
set terminal pngcairo size 1300,1500 font 'sans,10'
set output 'init_hist.png'
set datafile separator ','
set datafile columnheaders
set multiplot layout 6,5 title "Activations of 5 layers of 100 units, 1000 N(0,1) inputs: histograms over [0, 1], 30 bins\nReLU rows share one scale; their first bin holds the zeros (about half) and runs off it"
set style fill solid 0.8 noborder
set xrange [0:1]
set xtics 0.5
set key off
set format y '%.0s%c'
set title 'sigmoid, std 1: 1-layer'
set ylabel 'count'
set yrange [0:40577]
set label 1 'std 0.46' at graph 0.95, graph 0.88 right front
plot 'init_hist.csv' using (($1 + $2) / 2):3 with boxes lc rgb '#1f77b4'
set title '2-layer'
set ylabel ''
set yrange [0:40577]
set label 1 'std 0.44' at graph 0.95, graph 0.88 right front
plot 'init_hist.csv' using (($1 + $2) / 2):4 with boxes lc rgb '#1f77b4'
set title '3-layer'
set ylabel ''
set yrange [0:40577]
set label 1 'std 0.44' at graph 0.95, graph 0.88 right front
plot 'init_hist.csv' using (($1 + $2) / 2):5 with boxes lc rgb '#1f77b4'
set title '4-layer'
set ylabel ''
set yrange [0:40577]
set label 1 'std 0.44' at graph 0.95, graph 0.88 right front
plot 'init_hist.csv' using (($1 + $2) / 2):6 with boxes lc rgb '#1f77b4'
set title '5-layer'
set ylabel ''
set yrange [0:40577]
set label 1 'std 0.42' at graph 0.95, graph 0.88 right front
plot 'init_hist.csv' using (($1 + $2) / 2):7 with boxes lc rgb '#1f77b4'
set title 'sigmoid, std 0.01: 1-layer'
set ylabel 'count'
set yrange [0:59400]
set label 1 'std 0.025' at graph 0.95, graph 0.88 right front
plot 'init_hist.csv' using (($1 + $2) / 2):8 with boxes lc rgb '#1f77b4'
set title '2-layer'
set ylabel ''
set yrange [0:59400]
set label 1 'std 0.013' at graph 0.95, graph 0.88 right front
plot 'init_hist.csv' using (($1 + $2) / 2):9 with boxes lc rgb '#1f77b4'
set title '3-layer'
set ylabel ''
set yrange [0:59400]
set label 1 'std 0.013' at graph 0.95, graph 0.88 right front
plot 'init_hist.csv' using (($1 + $2) / 2):10 with boxes lc rgb '#1f77b4'
set title '4-layer'
set ylabel ''
set yrange [0:59400]
set label 1 'std 0.012' at graph 0.95, graph 0.88 right front
plot 'init_hist.csv' using (($1 + $2) / 2):11 with boxes lc rgb '#1f77b4'
set title '5-layer'
set ylabel ''
set yrange [0:59400]
set label 1 'std 0.012' at graph 0.95, graph 0.88 right front
plot 'init_hist.csv' using (($1 + $2) / 2):12 with boxes lc rgb '#1f77b4'
set title 'sigmoid, lecun (Xavier): 1-layer'
set ylabel 'count'
set yrange [0:14722]
set label 1 'std 0.21' at graph 0.95, graph 0.88 right front
plot 'init_hist.csv' using (($1 + $2) / 2):13 with boxes lc rgb '#1f77b4'
set title '2-layer'
set ylabel ''
set yrange [0:14722]
set label 1 'std 0.13' at graph 0.95, graph 0.88 right front
plot 'init_hist.csv' using (($1 + $2) / 2):14 with boxes lc rgb '#1f77b4'
set title '3-layer'
set ylabel ''
set yrange [0:14722]
set label 1 'std 0.13' at graph 0.95, graph 0.88 right front
plot 'init_hist.csv' using (($1 + $2) / 2):15 with boxes lc rgb '#1f77b4'
set title '4-layer'
set ylabel ''
set yrange [0:14722]
set label 1 'std 0.11' at graph 0.95, graph 0.88 right front
plot 'init_hist.csv' using (($1 + $2) / 2):16 with boxes lc rgb '#1f77b4'
set title '5-layer'
set ylabel ''
set yrange [0:14722]
set label 1 'std 0.13' at graph 0.95, graph 0.88 right front
plot 'init_hist.csv' using (($1 + $2) / 2):17 with boxes lc rgb '#1f77b4'
set title 'ReLU, std 0.01: 1-layer'
set ylabel 'count'
set yrange [0:12985]
set label 1 'std 0.058' at graph 0.95, graph 0.88 right front
plot 'init_hist.csv' using (($1 + $2) / 2):18 with boxes lc rgb '#2ca02c'
set title '2-layer'
set ylabel ''
set yrange [0:12985]
set label 1 'std 0.0041' at graph 0.95, graph 0.88 right front
plot 'init_hist.csv' using (($1 + $2) / 2):19 with boxes lc rgb '#2ca02c'
set title '3-layer'
set ylabel ''
set yrange [0:12985]
set label 1 'std 0.00026' at graph 0.95, graph 0.88 right front
plot 'init_hist.csv' using (($1 + $2) / 2):20 with boxes lc rgb '#2ca02c'
set title '4-layer'
set ylabel ''
set yrange [0:12985]
set label 1 'std 1.7e-05' at graph 0.95, graph 0.88 right front
plot 'init_hist.csv' using (($1 + $2) / 2):21 with boxes lc rgb '#2ca02c'
set title '5-layer'
set ylabel ''
set yrange [0:12985]
set label 1 'std 1.3e-06' at graph 0.95, graph 0.88 right front
plot 'init_hist.csv' using (($1 + $2) / 2):22 with boxes lc rgb '#2ca02c'
set title 'ReLU, lecun (Xavier): 1-layer'
set ylabel 'count'
set yrange [0:12985]
set label 1 'std 0.59' at graph 0.95, graph 0.88 right front
plot 'init_hist.csv' using (($1 + $2) / 2):23 with boxes lc rgb '#2ca02c'
set title '2-layer'
set ylabel ''
set yrange [0:12985]
set label 1 'std 0.42' at graph 0.95, graph 0.88 right front
plot 'init_hist.csv' using (($1 + $2) / 2):24 with boxes lc rgb '#2ca02c'
set title '3-layer'
set ylabel ''
set yrange [0:12985]
set label 1 'std 0.29' at graph 0.95, graph 0.88 right front
plot 'init_hist.csv' using (($1 + $2) / 2):25 with boxes lc rgb '#2ca02c'
set title '4-layer'
set ylabel ''
set yrange [0:12985]
set label 1 'std 0.2' at graph 0.95, graph 0.88 right front
plot 'init_hist.csv' using (($1 + $2) / 2):26 with boxes lc rgb '#2ca02c'
set title '5-layer'
set ylabel ''
set yrange [0:12985]
set label 1 'std 0.17' at graph 0.95, graph 0.88 right front
plot 'init_hist.csv' using (($1 + $2) / 2):27 with boxes lc rgb '#2ca02c'
set title 'ReLU, he: 1-layer'
set ylabel 'count'
set yrange [0:12985]
set label 1 'std 0.83' at graph 0.95, graph 0.88 right front
plot 'init_hist.csv' using (($1 + $2) / 2):28 with boxes lc rgb '#2ca02c'
set title '2-layer'
set ylabel ''
set yrange [0:12985]
set label 1 'std 0.84' at graph 0.95, graph 0.88 right front
plot 'init_hist.csv' using (($1 + $2) / 2):29 with boxes lc rgb '#2ca02c'
set title '3-layer'
set ylabel ''
set yrange [0:12985]
set label 1 'std 0.86' at graph 0.95, graph 0.88 right front
plot 'init_hist.csv' using (($1 + $2) / 2):30 with boxes lc rgb '#2ca02c'
set title '4-layer'
set ylabel ''
set yrange [0:12985]
set label 1 'std 0.91' at graph 0.95, graph 0.88 right front
plot 'init_hist.csv' using (($1 + $2) / 2):31 with boxes lc rgb '#2ca02c'
set title '5-layer'
set ylabel ''
set yrange [0:12985]
set label 1 'std 1' at graph 0.95, graph 0.88 right front
plot 'init_hist.csv' using (($1 + $2) / 2):32 with boxes lc rgb '#2ca02c'
unset multiplot
