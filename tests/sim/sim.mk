# tests/sim/sim.mk - build rule for the SMC simulator (build/smc-sim), the
# test double of Alibaba Cloud's RPC API.  Included by the top-level
# Makefile, which provides CC, ALL_CFLAGS, ALL_LDFLAGS, PKG_LIBS and BUILD.
# The simulator is a handful of files, so it is compiled in one step.

SIM_SRCS := $(wildcard tests/sim/*.c)
SIM_HDRS := $(wildcard tests/sim/*.h)

$(BUILD)/smc-sim: $(SIM_SRCS) $(SIM_HDRS) | $(BUILD)/obj
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $(SIM_SRCS) $(PKG_LIBS)
