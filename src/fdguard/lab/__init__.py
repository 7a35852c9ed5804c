"""fdguard lab: reproduce libuv fd leaks in isolation, build libuv, bisect, emit reproducers."""
