/*
 * pingpong.c - the cost of a message between two ranks, for the alpha-beta
 * model of tests/dist/scaling: for sizes of 8 B to 32 MB, the time of a
 * one-way message (half a ping-pong round trip, the best of several
 * rounds) and of an MPI_Allreduce of that many bytes of floats over all
 * ranks. Rank 0 prints CSV: bytes,oneway_s,allreduce_s.
 *
 * usage: mpirun -np 2 pingpong
 */
#include <mpi.h>

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	MPI_Init(&argc, &argv);
	int rank, size;
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	size_t most = (size_t)32 << 20;
	float *a = calloc(most / 4, 4), *b = calloc(most / 4, 4);
	if (!a || !b || size < 2) {
		if (rank == 0)
			fprintf(stderr, "pingpong: %s\n", size < 2 ? "needs 2 ranks" : "out of memory");
		MPI_Abort(MPI_COMM_WORLD, 1);
	}
	if (rank == 0)
		printf("bytes,oneway_s,allreduce_s\n");
	for (size_t n = 8; n <= most; n *= 4) {
		int reps = n < 65536 ? 200 : n < (4u << 20) ? 20 : 5;
		double best = 1e9, best_ar = 1e9;
		for (int round = 0; round < 3; round++) {
			MPI_Barrier(MPI_COMM_WORLD);
			double t0 = MPI_Wtime();
			for (int i = 0; i < reps; i++) {
				if (rank == 0) {
					MPI_Send(a, (int)n, MPI_BYTE, 1, 0, MPI_COMM_WORLD);
					MPI_Recv(b, (int)n, MPI_BYTE, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
				} else if (rank == 1) {
					MPI_Recv(b, (int)n, MPI_BYTE, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
					MPI_Send(a, (int)n, MPI_BYTE, 0, 0, MPI_COMM_WORLD);
				}
			}
			double t = (MPI_Wtime() - t0) / reps / 2;
			best = t < best ? t : best;
			MPI_Barrier(MPI_COMM_WORLD);
			t0 = MPI_Wtime();
			for (int i = 0; i < reps; i++)
				MPI_Allreduce(a, b, (int)(n / 4 ? n / 4 : 1), MPI_FLOAT, MPI_SUM,
					      MPI_COMM_WORLD);
			t = (MPI_Wtime() - t0) / reps;
			best_ar = t < best_ar ? t : best_ar;
		}
		if (rank == 0)
			printf("%zu,%.9g,%.9g\n", n, best, best_ar);
	}
	free(a);
	free(b);
	MPI_Finalize();
	return 0;
}
