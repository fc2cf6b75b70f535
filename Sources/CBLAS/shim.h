// OpenBLAS's cblas.h also declares openblas_get_corename/get_config/set_num_threads,
// which records store so that a run's BLAS kernel is known.
#include <cblas.h>
