/* One virtual CPU: its KVM fd, shared kvm_run page and thread. */
#ifndef HYVE_VCPU_H
#define HYVE_VCPU_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct vm;

struct vcpu {
	struct vm *vm;
	unsigned id; /* also its APIC ID */
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool thread_started;

	/* Halt detection (haltwatch.c): the watcher asks for a sample, the vCPU thread takes it. */
	_Atomic unsigned sample_asked;  /* generation asked for, 0 = none */
	_Atomic unsigned sample_gen;    /* generation of the last sample taken */
	_Atomic bool sample_stopped;    /* that sample found the vCPU stopped for good */
	_Atomic bool sample_halted;     /* ... and halted with interrupts disabled */
};

/* Creates the KVM vCPU and gives it its CPUID and LAPIC set-up; 0 or -1. */
int vcpu_init(struct vcpu *vcpu, struct vm *vm, unsigned id);
void vcpu_destroy(struct vcpu *vcpu);
int vcpu_start_thread(struct vcpu *vcpu);
/* Forces the vCPU out of KVM_RUN so it looks at the VM's run state. */
void vcpu_kick(struct vcpu *vcpu);
/* Asks the vCPU thread to record whether it is stopped for good, tagged with gen (> 0). */
void vcpu_ask_sample(struct vcpu *vcpu, unsigned gen);

/* CPUID for vCPU `id` of `ncpus`, from KVM's supported set (cpuid.c). */
struct kvm_cpuid2 *cpuid_for_vcpu(const struct kvm_cpuid2 *supported, unsigned id, unsigned ncpus);
/* KVM_GET_SUPPORTED_CPUID; NULL after logging. */
struct kvm_cpuid2 *cpuid_get_supported(int kvm_fd);

/* Feature-flag registers of a CPUID leaf, for comparing what two hosts offer. */
struct cpuid_flags {
	uint32_t ebx, ecx, edx;
};
/*
 * The bits of leaf `function` (subleaf 0) that are feature flags a host must
 * offer for a guest that saw them: not topology, not bits hyve sets itself.
 */
struct cpuid_flags cpuid_feature_mask(uint32_t function);

#endif
