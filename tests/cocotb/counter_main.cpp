// A C++ main for tests/test_cosim_native.py: drives the Counter of test_cosim_infra.py.
// usage: <sim> CYCLES OUT [EXIT]: counts CYCLES enabled cycles, writes the count to OUT and exits
// with EXIT (default 0); CYCLES < 0 loops forever (a hang).
#include <cstdio>
#include <cstdlib>
#include "Vtop.h"
#include "verilated.h"

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    long cycles = atol(argv[1]);
    VerilatedContext context;
    Vtop top(&context, "");
    top.rst = 0;
    top.en = 1;
    for (long i = 0; cycles < 0 || i < cycles; ++i) {
        top.clk = 0;
        top.eval();
        top.clk = 1;
        top.eval();
    }
    FILE *out = fopen(argv[2], "w");
    if (!out) return 2;
    fprintf(out, "%u\n", (unsigned)top.count);
    fclose(out);
    puts("counter_main: done");
    return argc > 3 ? atoi(argv[3]) : 0;
}
