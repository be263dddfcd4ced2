# tests/fault/fault.mk - the fault-injection shim of the black-box tests
# (tests/fault/fault.c, preloaded into the gateway). Included by the
# top-level Makefile, which provides CC, WARN and BUILD. Always built
# without sanitizers: it is loaded into sanitized binaries too.

$(BUILD)/fault.so: tests/fault/fault.c | $(BUILD)/obj
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) -O2 -g -fPIC -shared -o $@ $< -ldl -lpthread
