namespace ns { template<typename T> struct Box { T v; __attribute__((noinline)) T get(int k) const { return v * k; } }; }
__attribute__((noinline)) int over(int a) { return a + 1; }
__attribute__((noinline)) int over(double a) { return (int)a; }
extern "C" __attribute__((export_name("run"))) int run(int x) { ns::Box<int> b{x}; return b.get(x) + over(x) + over(1.5 * x); }
