"""The planner evaluation: scenarios.yaml run through tools.plan.rules.make_plan (see __main__)."""
