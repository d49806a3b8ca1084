"""Planning: from goal, data facts, hardware and constraints to a plan with reasons.

`planner` reads the world (data, hardware, model) and hands plain values to `rules.make_plan`;
`decide` holds one function per decision, `fit` and `estimate` the memory, time and cost,
`sections` and `report` the plan.md text, `types` what goes in and out.
"""
