"""The suite's test harness: real servers for pytest, service processes, a TCP proxy, tokens, fuzzing.

Test code only: no service imports it. `testkit.pytest_plugin` hands tests the real
servers (registered as a pytest plugin by this package's entry point),
`testkit.harness` runs services as processes and in-process, `testkit.fuzzing`
drives an OpenAPI document with schemathesis, `testkit.deciders` states a
decider's behaviour as given / when / then.
"""
