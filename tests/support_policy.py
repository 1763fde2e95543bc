"""The policy document the issue states as the contract, shared by the policy tests."""

CONTRACT = """\
rules:
  - id: no-calculator-for-developers
    effect: deny
    subjects: {roles: [developer]}
    actions: [tools/call]
    targets: ["essentials__calculator_*"]
limits:
  - id: echo-per-key
    scope: [key, tool]
    targets: ["everything__*"]
    rate: 5/minute
    burst: 5
"""
