/* ACPI fixed hardware: PM1 event/control blocks, PM timer, reset register, power button. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <cmocka.h>

#include "boot/layout.h"
#include "core/device.h"
#include "core/log.h"
#include "core/vm.h"
#include "dev/acpi_pm.h"
#include "snapshot/state.h"
#include "testvm.h"

#define PM1_STS PORT_ACPI_PM1A_EVT
#define PM1_EN (PORT_ACPI_PM1A_EVT + 2)
#define PWRBTN 0x0100
#define SLP_EN 0x2000

static struct vm *new_pm_vm(void)
{
	struct vm *vm = testvm_new(256ULL << 20);

	assert_int_equal(device_model_find("acpi-pm")->attach(vm), 0);
	return vm;
}

static int setup(void **state)
{
	*state = new_pm_vm();
	return 0;
}

static int teardown(void **state)
{
	testvm_free(*state);
	return 0;
}

static void test_sci_en_always_set(void **state)
{
	struct vm *vm = *state;

	assert_int_equal(inw(vm, PORT_ACPI_PM1A_CNT) & 1, 1);
	outw(vm, PORT_ACPI_PM1A_CNT, 0x0000); /* cannot be turned off: there is no SMI mode */
	assert_int_equal(inw(vm, PORT_ACPI_PM1A_CNT) & 1, 1);
}

static void test_s5_requests_poweroff(void **state)
{
	struct vm *vm = *state;

	/* Linux writes SLP_TYP first, then SLP_TYP with SLP_EN. */
	outw(vm, PORT_ACPI_PM1A_CNT, ACPI_S5_SLP_TYP << 10);
	assert_int_equal(testvm_exit_status(), -1);
	assert_int_equal(inw(vm, PORT_ACPI_PM1A_CNT), (ACPI_S5_SLP_TYP << 10) | 1);
	outw(vm, PORT_ACPI_PM1A_CNT, (ACPI_S5_SLP_TYP << 10) | SLP_EN);
	assert_int_equal(testvm_exit_status(), HYVE_EXIT_POWEROFF);
	assert_int_equal(inw(vm, PORT_ACPI_PM1A_CNT) & SLP_EN, 0); /* write-only */
}

static void test_s5_by_byte_write(void **state)
{
	struct vm *vm = *state;

	outb(vm, PORT_ACPI_PM1A_CNT + 1, ((ACPI_S5_SLP_TYP << 10) | SLP_EN) >> 8);
	assert_int_equal(testvm_exit_status(), HYVE_EXIT_POWEROFF);
}

/* OVMF's shutdown on Q35: clear SLP_TYP (bits 10-13), then set SLP_EN: sleep type 0 is soft-off. */
static void test_firmware_shutdown_type_0(void **state)
{
	struct vm *vm = *state;
	uint16_t v = inw(vm, PORT_ACPI_PM1A_CNT);

	outw(vm, PORT_ACPI_PM1A_CNT, v & ~0x3C00);
	assert_int_equal(testvm_exit_status(), -1);
	v = inw(vm, PORT_ACPI_PM1A_CNT);
	outw(vm, PORT_ACPI_PM1A_CNT, v | SLP_EN);
	assert_int_equal(testvm_exit_status(), HYVE_EXIT_POWEROFF);
}

static void test_other_sleep_types_are_ignored(void **state)
{
	struct vm *vm = *state;

	outw(vm, PORT_ACPI_PM1A_CNT, (1 << 10) | SLP_EN); /* S1 */
	outw(vm, PORT_ACPI_PM1A_CNT, (3 << 10) | SLP_EN);
	assert_int_equal(testvm_exit_status(), -1);
}

static void test_reset_register(void **state)
{
	struct vm *vm = *state;

	outb(vm, PORT_RESET, 0x02); /* SYS_RST alone: armed, nothing happens */
	assert_int_equal(inb(vm, PORT_RESET), 0x02);
	assert_int_equal(testvm_exit_status(), -1);
	outb(vm, PORT_RESET, RESET_VALUE);
	assert_int_equal(testvm_exit_status(), HYVE_EXIT_REBOOT);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void test_pm_timer_runs_at_3_58_mhz(void **state)
{
	struct vm *vm = *state;
	struct timespec ts = { 0, 50000000L };
	uint64_t t0 = mono_ns(), t1;
	uint32_t a = inl(vm, PORT_ACPI_PM_TMR), b, ticks, expect;

	nanosleep(&ts, NULL);
	b = inl(vm, PORT_ACPI_PM_TMR);
	t1 = mono_ns();
	ticks = b - a; /* wraps like the 32-bit register */
	expect = (uint32_t)((t1 - t0) * 3579545ULL / 1000000000ULL);
	assert_true(ticks > 0);
	assert_true(ticks <= expect + 100);
	assert_true(ticks >= expect - expect / 10);
	/* Read-only, and a byte read sees the same counter. */
	outl(vm, PORT_ACPI_PM_TMR, 0);
	assert_true((uint32_t)(inl(vm, PORT_ACPI_PM_TMR) - b) < 3579545U);
	assert_int_equal(inb(vm, PORT_ACPI_PM_TMR + 3), (inl(vm, PORT_ACPI_PM_TMR) >> 24) & 0xFF);
}

static void test_power_button(void **state)
{
	struct vm *vm = *state;

	/* Not enabled yet: status only. */
	acpi_pm_power_button(vm);
	assert_int_equal(inw(vm, PM1_STS) & PWRBTN, PWRBTN);
	assert_int_equal(testvm_irq_level(IRQ_ACPI_SCI), 0);
	/* Enabling it raises the SCI; clearing the status (write 1) drops it. */
	outw(vm, PM1_EN, PWRBTN);
	assert_int_equal(inw(vm, PM1_EN), PWRBTN);
	assert_int_equal(testvm_irq_level(IRQ_ACPI_SCI), 1);
	outw(vm, PM1_STS, 0x0000); /* writing 0 clears nothing */
	assert_int_equal(testvm_irq_level(IRQ_ACPI_SCI), 1);
	outw(vm, PM1_STS, PWRBTN);
	assert_int_equal(inw(vm, PM1_STS) & PWRBTN, 0);
	assert_int_equal(testvm_irq_level(IRQ_ACPI_SCI), 0);
	/* Pressed again while enabled: straight to the SCI. */
	acpi_pm_power_button(vm);
	assert_int_equal(testvm_irq_level(IRQ_ACPI_SCI), 1);
	assert_int_equal(testvm_irq_edges(IRQ_ACPI_SCI), 2);
	/* The whole block as one 32-bit access: status then enable. */
	assert_int_equal(inl(vm, PM1_STS), (uint32_t)PWRBTN << 16 | PWRBTN);
	outl(vm, PM1_STS, (uint32_t)PWRBTN << 16 | PWRBTN); /* clears status, keeps enable */
	assert_int_equal(inl(vm, PM1_STS), (uint32_t)PWRBTN << 16);
	assert_int_equal(testvm_irq_level(IRQ_ACPI_SCI), 0);
}

static void test_power_button_without_device(void **state)
{
	struct vm *vm = testvm_new(256ULL << 20);

	(void)state;
	acpi_pm_power_button(vm); /* no acpi-pm: nothing to press, nothing breaks */
	assert_int_equal(testvm_irq_calls(IRQ_ACPI_SCI), 0);
	testvm_free(vm);
}

static void test_save_restore(void **state)
{
	struct vm *vm = *state, *vm2 = new_pm_vm();
	struct device *a = device_find(vm, "platform.acpi-pm"), *b = device_find(vm2, "platform.acpi-pm");
	struct state_writer *w = state_writer_new();
	struct state_reader *r;
	uint8_t *buf;
	size_t len;
	uint32_t tmr;

	outw(vm, PM1_EN, PWRBTN | 0x0020);
	acpi_pm_power_button(vm);
	outw(vm, PORT_ACPI_PM1A_CNT, 0x0002 | (3 << 10));
	outb(vm, PORT_RESET, 0x02);
	tmr = inl(vm, PORT_ACPI_PM_TMR);
	assert_int_equal(a->model->save(a, w), 0);
	assert_int_equal(state_writer_finish(w, &buf, &len), 0);
	state_writer_free(w);
	r = state_reader_new(buf, len);
	assert_int_equal(b->model->restore(b, r, 1), 0);
	state_reader_free(r);
	free(buf);

	assert_int_equal(inl(vm2, PM1_STS), inl(vm, PM1_STS));
	assert_int_equal(inw(vm2, PORT_ACPI_PM1A_CNT), inw(vm, PORT_ACPI_PM1A_CNT));
	assert_int_equal(inb(vm2, PORT_RESET), 0x02);
	assert_int_equal(testvm_irq_level(IRQ_ACPI_SCI), 1);
	/* The timer carries on from the saved count rather than jumping to the host's. */
	assert_true((uint32_t)(inl(vm2, PORT_ACPI_PM_TMR) - tmr) < 3579545U / 10);
	testvm_free(vm2);
}

static void test_reset_clears_events(void **state)
{
	struct vm *vm = *state;
	struct device *d = device_find(vm, "platform.acpi-pm");

	outw(vm, PM1_EN, PWRBTN);
	acpi_pm_power_button(vm);
	assert_int_equal(testvm_irq_level(IRQ_ACPI_SCI), 1);
	d->model->reset(d);
	assert_int_equal(inl(vm, PM1_STS), 0);
	assert_int_equal(testvm_irq_level(IRQ_ACPI_SCI), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_sci_en_always_set, setup, teardown),
		cmocka_unit_test_setup_teardown(test_s5_requests_poweroff, setup, teardown),
		cmocka_unit_test_setup_teardown(test_s5_by_byte_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_firmware_shutdown_type_0, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_sleep_types_are_ignored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_register, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pm_timer_runs_at_3_58_mhz, setup, teardown),
		cmocka_unit_test_setup_teardown(test_power_button, setup, teardown),
		cmocka_unit_test(test_power_button_without_device),
		cmocka_unit_test_setup_teardown(test_save_restore, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_clears_events, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
