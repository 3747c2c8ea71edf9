// Native driver of the Verilated tile: the protocol of tile_tb.py without cocotb or VPI.
//
// usage: <sim> CASE RESULT
//
// CASE (text, written by mixpim.sim.tile_cosim): "mixpim-tile-case 1", the number of programs,
// then per program "P length max_cycles n_writes n_reads", n_writes lines "sel addr hex" and
// n_reads lines "sel addr". RESULT gets per program "P cycles busy_hex dispatched error error_pc
// nonfinite sim_seconds" and n_reads lines of hex words. The tile sees the input sequence of the
// cocotb driver (sim/tb/tile_tb.py), so every status register counts the same: reset for
// two edges; per program one host write per edge, a one-cycle start pulse, edges until done rises
// (at most max_cycles: more is a hang, exit 3), status sampled then, one edge, pipelined reads
// (address out before edge i, word sampled after it, the next address already applied), one edge.
// Built with tracing (MIXPIM_WAVES=1), it writes dump.vcd in the working directory.

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "Vtop.h"
#include "verilated.h"
#if VM_TRACE
#include "verilated_vcd_c.h"
#endif

using Words = std::vector<uint32_t>;

static std::unique_ptr<VerilatedContext> context;
static std::unique_ptr<Vtop> top;
static uint64_t now = 0;  // ns, 10 ns clock period as in the cocotb driver
#if VM_TRACE
static VerilatedVcdC *tfp = nullptr;
#endif

static void eval() {
    top->eval();
#if VM_TRACE
    tfp->dump(now);
#endif
}

// One clock period: rising edge (inputs set before it are sampled), then the falling edge.
static void tick() {
    top->clk = 1;
    eval();
    now += 5;
    top->clk = 0;
    eval();
    now += 5;
}

static Words parse_hex(const char *s) {
    Words w;
    size_t n = strlen(s);
    while (n > 0) {
        size_t take = n >= 8 ? 8 : n;
        w.push_back((uint32_t)strtoul(std::string(s + n - take, take).c_str(), nullptr, 16));
        n -= take;
    }
    return w;
}

static std::string to_hex(const uint32_t *w, size_t n) {
    while (n > 1 && w[n - 1] == 0) --n;
    std::string out;
    char buf[16];
    snprintf(buf, sizeof buf, "%x", n ? w[n - 1] : 0);
    out += buf;
    for (size_t i = n - 1; i-- > 0;) {
        snprintf(buf, sizeof buf, "%08x", w[i]);
        out += buf;
    }
    return out;
}

// Ports are CData/SData/IData/QData (up to 64 bits) or VlWide<N> (32-bit words, LSB first).
template <std::size_t N> static void put(VlWide<N> &port, const Words &w) {
    for (std::size_t i = 0; i < N; ++i) port[i] = i < w.size() ? w[i] : 0;
}
template <typename T> static void put(T &port, const Words &w) {
    uint64_t v = (w.size() > 0 ? w[0] : 0) | (w.size() > 1 ? (uint64_t)w[1] << 32 : 0);
    port = (T)v;
}
template <std::size_t N> static std::string hexof(const VlWide<N> &port) {
    uint32_t w[N];
    for (std::size_t i = 0; i < N; ++i) w[i] = port[i];
    return to_hex(w, N);
}
template <typename T> static std::string hexof(const T &port) {
    uint64_t v = port;
    uint32_t w[2] = {(uint32_t)v, (uint32_t)(v >> 32)};
    return to_hex(w, 2);
}

static void die(const char *what) {
    fprintf(stderr, "tile_main: %s\n", what);
    exit(2);
}

struct Access {
    unsigned sel;
    uint32_t addr;
    Words data;
};

static void address(const Access &a) {
    top->host_sel = a.sel;
    top->host_addr = a.addr;
}

int main(int argc, char **argv) {
    if (argc < 3) die("usage: <sim> CASE RESULT");
    FILE *in = fopen(argv[1], "r");
    if (!in) die("cannot open the case file");
    FILE *out = fopen(argv[2], "w");
    if (!out) die("cannot open the result file");
    char tag[64];
    int version = 0, programs = 0;
    if (fscanf(in, "%63s %d %d", tag, &version, &programs) != 3
        || strcmp(tag, "mixpim-tile-case") != 0 || version != 1)
        die("not a mixpim-tile-case 1 file");

    context.reset(new VerilatedContext);
#if VM_TRACE
    context->traceEverOn(true);
#endif
    top.reset(new Vtop(context.get(), ""));
#if VM_TRACE
    tfp = new VerilatedVcdC;
    top->trace(tfp, 99);
    tfp->open("dump.vcd");
#endif
    // The top is the tile behind registered inputs (sim/tile_harness.py): inputs set before a
    // tick() reach the tile right after that edge, which is when the cocotb driver sets them
    // (after `await RisingEdge`); outputs read after a tick() are what its ReadOnly phase reads.
    top->clk = 0;
    top->rst = 1;
    eval();
    tick();  // reset: the second edge is the first write's (or start's) below
    top->rst = 0;

    static char word[4096];
    for (int p = 0; p < programs; ++p) {
        long length = 0, max_cycles = 0, n_writes = 0, n_reads = 0;
        if (fscanf(in, "%63s %ld %ld %ld %ld", tag, &length, &max_cycles, &n_writes, &n_reads) != 5
            || strcmp(tag, "P") != 0)
            die("malformed program header");
        top->host_we = 1;
        for (long i = 0; i < n_writes; ++i) {
            Access a{};
            if (fscanf(in, "%u %u %4095s", &a.sel, &a.addr, word) != 3) die("malformed write");
            address(a);
            put(top->host_wdata, parse_hex(word));
            tick();
        }
        std::vector<Access> reads(n_reads);
        for (auto &a : reads)
            if (fscanf(in, "%u %u", &a.sel, &a.addr) != 2) die("malformed read");

        top->host_we = 0;
        top->length = (uint32_t)length;
        top->start = 1;
        tick();
        top->start = 0;
        tick();  // the edge that samples start
        auto began = std::chrono::steady_clock::now();
        bool was = top->done, rose = false;
        for (long n = 0; n < max_cycles && !rose; ++n) {
            tick();
            rose = top->done && !was;
            was = top->done;
        }
        double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
        if (!top->done) {
            fprintf(stderr, "tile_main: program %d: no done after %ld cycles (the tile hangs)\n", p,
                    max_cycles);
            fclose(out);
#if VM_TRACE
            tfp->close();
#endif
            return 3;
        }
        fprintf(out, "P %s %s %s %s %s %s %.9f\n", hexof(top->cycles).c_str(), hexof(top->busy).c_str(),
                hexof(top->dispatched).c_str(), hexof(top->error).c_str(), hexof(top->error_pc).c_str(),
                hexof(top->nonfinite).c_str(), seconds);
        if (!reads.empty()) address(reads[0]);
        tick();
        for (size_t i = 0; i < reads.size(); ++i) {
            if (i + 1 < reads.size()) address(reads[i + 1]);
            tick();  // the word of read i is out; the address of read i + 1 is in
            fprintf(out, "%s\n", hexof(top->host_rdata).c_str());
        }
        // The cocotb driver's last edge of a program is the next program's first.
    }
    top->final();
#if VM_TRACE
    tfp->close();
#endif
    if (fclose(out) != 0) die("cannot write the result file");
    return 0;
}
