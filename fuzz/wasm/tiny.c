static inline int mix(int a, int b) { return (a * 31) ^ (b >> 3); }
__attribute__((noinline)) int leaf(int x) { int s = 0; for (int i = 0; i < x; i++) s = mix(s, i); return s; }
__attribute__((import_module("env"), import_name("host"))) int host(int);
__attribute__((noinline)) int mid(int x) { return leaf(x) + host(x); }
typedef int (*fp)(int);
fp table[2] = { leaf, mid };
__attribute__((export_name("run"))) int run(int x) { return table[x & 1](x) + mid(x - 1); }
